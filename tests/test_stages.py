"""The CPU denoiser in stages (engine/stages.py): where the graph is cut, and that the numbers are the
whole graph's for every kind of batch the sampler sends."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import denoiser_with_external_weights, exported_engine  # noqa: E402

from lesionaug.engine.session import build_session, cpu_stage_plan  # noqa: E402
from lesionaug.engine.stages import CONTROL_INPUTS, TEXT  # noqa: E402

CPU = ["CPUExecutionProvider"]
# Ops that only ever compute on activations.
WORK = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Softmax", "InstanceNormalization", "BatchNormalization",
        "LayerNormalization", "Sigmoid", "Erf", "Resize"}


def _ops(model_bytes: bytes) -> tuple[collections.Counter, list]:
    import onnx

    model = onnx.load_from_string(model_bytes)
    return collections.Counter(n.op_type for n in model.graph.node), list(model.graph.node)


def _feeds(engine_dir, batch: int, *, guided: bool, seed: int = 0, size: int | None = None) -> dict:
    """Denoiser inputs; ``guided``: two halves equal in everything but the text, as the sampler sends."""
    from lesionaug.engine.card import EngineCard

    card = EngineCard.read(engine_dir)
    rng = np.random.default_rng(seed)
    size = size or card.size_multiple * 2
    rows = batch // 2 if guided else batch
    side = size // card.scale

    def doubled(a):
        return np.concatenate([a, a]) if guided else a

    return {"sample": doubled(rng.standard_normal((rows, card.channels, side, side), dtype=np.float32)),
            "timestep": doubled(rng.choice([999.0, 500.0, 10.0], rows).astype(np.float32)),
            TEXT: rng.standard_normal((batch, card.token_length, card.hidden_size), dtype=np.float32),
            "controlnet_cond": doubled((rng.random((rows, 3, size, size)) > 0.5).astype(np.float32)),
            "conditioning_scale": np.array([0.8], np.float32)}


@pytest.mark.parametrize("kind", ["pixel", "latent"])
def test_the_stages_split_the_graph_without_computing_any_layer_twice(kind):
    import onnx

    from lesionaug.engine.cpu_graph import tune_model

    path = exported_engine(kind).engine_dir / "denoiser.onnx"
    plan, rewrites = cpu_stage_plan(path)
    assert plan is not None and rewrites["groupnorm_affine"] > 0
    whole = onnx.load(str(path))
    tune_model(whole)
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(whole).graph.value_info}
    stages = [_ops(stage.model) for stage in (plan.control, plan.shared, plan.text)]
    # Every node of the graph is in a stage; one in two stages is shape arithmetic (int64), recomputed
    # on the stage's own batch.
    seen = collections.Counter(node.name for _, nodes in stages for node in nodes)
    assert set(seen) == {node.name for node in whole.graph.node}
    twice = [node for node in whole.graph.node if seen[node.name] > 1]
    assert all(node.op_type == "Shape" or types.get(node.output[0]) == onnx.TensorProto.INT64 for node in twice)
    assert not [node for node in twice if node.op_type in WORK]
    control, shared, text = (counts for counts, _ in stages)
    assert control["Conv"] >= 2  # the ControlNet's conditioning embedding
    assert shared["Conv"] >= 6 and text["Conv"] > shared["Conv"]  # the down blocks before the first cross-attention
    assert set(plan.control.inputs) <= set(CONTROL_INPUTS)
    # The earlier stages may read the text's shape, never its values.
    for stage in (plan.control, plan.shared):
        assert all(node.op_type == "Shape" for node in _ops(stage.model)[1] if TEXT in node.input)
    assert plan.describe() == {"control": plan.control.nodes, "shared": plan.shared.nodes, "text": plan.text.nodes}


def test_a_graph_that_is_not_the_fused_denoiser_has_no_stages():
    plan, _ = cpu_stage_plan(exported_engine("pixel").engine_dir / "text_encoder.onnx")
    assert plan is None


class _Counting:
    """Wraps a stage's runner and records the batch of every call."""

    def __init__(self, runner):
        self.runner, self.batches = runner, []

    def run(self, feeds, outputs, *rest):
        self.batches.append(max(a.shape[0] for name, a in feeds.items() if name != "conditioning_scale"))
        return self.runner.run(feeds, outputs, *rest)


@pytest.mark.parametrize("kind", ["pixel", "latent"])
def test_staged_denoiser_gives_the_whole_graphs_numbers_and_computes_the_shared_part_once(kind):
    from lesionaug.engine import Engine

    exported = exported_engine(kind)
    engine = Engine.load(exported.engine_dir, "cpu", threads=2)
    staged = engine.runners["denoiser"]
    assert engine.describe()["cpu_stages"] == {"denoiser": staged.plan.describe()}
    whole = build_session(exported.engine_dir / "denoiser.onnx", "cpu", CPU, 1)
    staged.control, staged.shared = _Counting(staged.control), _Counting(staged.shared)

    def check(feeds):
        expected = whole.run(["noise_pred"], feeds)[0]
        ours = staged.run(feeds)
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() <= 1e-5

    guided = _feeds(exported.engine_dir, 6, guided=True)
    check(guided)  # three jobs with guidance: the control and shared stages on three rows
    assert staged.control.batches == [3] and staged.shared.batches == [3]
    later = dict(guided, sample=guided["sample"] * 0.5, timestep=np.full(6, 250.0, np.float32))
    check(later)  # the next step: same control image, so no control stage
    assert staged.control.batches == [3] and staged.shared.batches == [3, 3]
    check(dict(later, conditioning_scale=np.array([0.3], np.float32)))  # the scale acts after the stages
    assert staged.control.batches == [3]
    check(dict(later, controlnet_cond=1.0 - later["controlnet_cond"]))  # a new control image
    assert staged.control.batches == [3, 3]

    check(_feeds(exported.engine_dir, 3, guided=False, seed=1))  # no guidance: every row on its own
    check(_feeds(exported.engine_dir, 1, guided=False, seed=2))
    assert staged.shared.batches[-2:] == [3, 1]
    # Equal halves but for the control image: not a guided batch.
    mixed = _feeds(exported.engine_dir, 2, guided=True, seed=3)
    mixed["controlnet_cond"] = mixed["controlnet_cond"].copy()
    mixed["controlnet_cond"][1] = 1.0 - mixed["controlnet_cond"][1]
    check(mixed)
    assert staged.shared.batches[-1] == 2
    check(_feeds(exported.engine_dir, 2, guided=True, seed=4))  # batch 1 with guidance
    assert staged.shared.batches[-1] == 1


def test_staged_engine_generates_the_images_of_the_whole_graph():
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate_float

    exported = exported_engine("pixel")
    staged = Engine.load(exported.engine_dir, "cpu", threads=2)
    whole = Engine.load(exported.engine_dir, "cpu", threads=2, cpu_stages=False)
    assert "cpu_stages" in staged.describe() and whole.describe()["cpu_stages"] == {}
    masks = [np.zeros((32, 32), bool) for _ in range(3)]
    for k, mask in enumerate(masks):
        mask[4 + 2 * k:24, 6:26 - k] = True
    prompts = ["a dermoscopic image of mel", "a dermoscopic image of nv", "a dermoscopic image of mel"]
    for settings in (SamplerSettings("dpm++", 3, 5.0), SamplerSettings("euler", 2, 1.0)):
        ours = generate_float(staged, prompts, masks, [7, 8, 9], settings)
        theirs = generate_float(whole, prompts, masks, [7, 8, 9], settings)
        assert np.abs(np.asarray(ours) - np.asarray(theirs)).max() <= 1e-5


def test_repeated_inputs_are_read_as_the_batch_twice_over_without_a_copy():
    """SplitBatchRunner.run with ``repeated`` inputs (a guided batch's shared tensors, given for one
    half): every split of the batch across workers, including slices that straddle the halves and a
    batch smaller than the workers, gives the result of the stacked tensor."""
    import onnx
    from onnx import TensorProto, helper

    from lesionaug.engine.binding import SplitBatchRunner, _rows

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    r = helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "r"], ["y"])], "g", [x, r], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)

    def session(threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        return ort.InferenceSession(model.SerializeToString(), options, providers=CPU)

    rng = np.random.default_rng(0)
    for batch, workers in ((6, 2), (6, 4), (2, 2), (2, 4), (8, 3)):
        xs = rng.standard_normal((batch, 4), dtype=np.float32)
        half = rng.standard_normal((batch // 2, 4), dtype=np.float32)
        runner = SplitBatchRunner(session(1), "y", workers, lambda: session(workers))
        got = runner.run({"x": xs, "r": half}, ["y"], frozenset({"r"}))[0]
        np.testing.assert_array_equal(got, xs + np.concatenate([half, half]))
    a = np.arange(3)
    assert _rows(a, 1, 2, True).base is a  # within one half: a view
    assert list(_rows(a, 2, 2, True)) == [2, 0]


def test_stages_of_a_graph_with_external_weights_read_them_from_its_folder(tmp_path):
    import onnx

    from lesionaug.engine.loaders import _staged_denoiser

    exported = exported_engine("pixel")
    path, model = denoiser_with_external_weights(tmp_path / "engine")
    staged, rewrites = _staged_denoiser(path, CPU, 2, True)
    assert rewrites["groupnorm_affine"] > 0
    external = {t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    kept = []
    plan, _ = cpu_stage_plan(path)
    for stage in (plan.control, plan.shared, plan.text):
        stored = onnx.load_from_string(stage.model)
        kept += [t.data_location == onnx.TensorProto.EXTERNAL for t in stored.graph.initializer if t.name in external]
    assert len(kept) > 100 and all(kept)  # the stages point at the data file, they hold no copy
    whole = build_session(exported.engine_dir / "denoiser.onnx", "cpu", CPU, 1)
    feeds = _feeds(exported.engine_dir, 4, guided=True)
    assert np.abs(staged.run(feeds) - whole.run(["noise_pred"], feeds)[0]).max() <= 1e-5
    # Batch 1 with guidance: the shared stage on one row, on a threaded session cut again from the file.
    one = _feeds(exported.engine_dir, 2, guided=True, seed=5)
    assert np.abs(staged.run(one) - whole.run(["noise_pred"], one)[0]).max() <= 1e-5
    assert staged.shared._threaded is not None
    assert not any(stage.model for stage in (staged.plan.control, staged.plan.shared, staged.plan.text))
