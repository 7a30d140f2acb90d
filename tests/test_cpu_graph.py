"""The CPU provider's graph rewrite (engine/cpu_graph.py): where it applies, and that it changes no number."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import denoiser_with_external_weights, exported_engine  # noqa: E402

from lesionaug.engine.cpu_graph import tune_model, tuned_graph  # noqa: E402
from lesionaug.engine.session import build_session, cpu_stage_plan, cpu_tuned_graph  # noqa: E402
from lesionaug.errors import ModelError  # noqa: E402

CPU = ["CPUExecutionProvider"]


# -- small hand-built graphs --------------------------------------------------------------------


def _finish(nodes, inputs, outputs, inits):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)


def groupnorm_model(channels=8, groups=4, dtype=np.float32, seed=0):
    """x (N, C, H, W) -> GroupNorm as the dynamo exporter writes it -> y."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    inits = [numpy_helper.from_array(np.array([0, groups, -1], np.int64), "grouped"),
             numpy_helper.from_array(np.ones(groups, dtype), "ones"),
             numpy_helper.from_array(np.zeros(groups, dtype), "zeros"),
             numpy_helper.from_array(rng.normal(size=(channels, 1, 1)).astype(dtype), "gamma"),
             numpy_helper.from_array(rng.normal(size=(channels, 1, 1)).astype(dtype), "beta")]
    nodes = [helper.make_node("Reshape", ["x", "grouped"], ["g"]),
             helper.make_node("InstanceNormalization", ["g", "ones", "zeros"], ["n"], epsilon=1e-5),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Reshape", ["n", "shape"], ["r"]),
             helper.make_node("Mul", ["r", "gamma"], ["scaled"]),
             helper.make_node("Add", ["scaled", "beta"], ["y"])]
    x = helper.make_tensor_value_info("x", elem, ["n", channels, "h", "w"])
    y = helper.make_tensor_value_info("y", elem, None)
    return _finish(nodes, [x], [y], inits)


def _session(model_or_bytes):
    import onnxruntime as ort

    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    return ort.InferenceSession(data, providers=CPU)


def _ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


# -- what gets rewritten ------------------------------------------------------------------------


def test_groupnorm_affine_becomes_one_batchnorm_with_the_same_numbers():
    import copy

    model = groupnorm_model()
    tuned = copy.deepcopy(model)
    assert tune_model(tuned) == {"groupnorm_affine": 1}
    ops = _ops(tuned)
    assert "BatchNormalization" in ops and "Mul" not in ops and "Add" not in ops
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(2, 8, 5, 7)).astype(np.float32)
    ours, theirs = _session(tuned).run(None, {"x": x})[0], _session(model).run(None, {"x": x})[0]
    assert np.abs(ours - theirs).max() <= 1e-6


def test_half_precision_patterns_are_left_alone():
    import copy

    model = groupnorm_model(dtype=np.float16)
    tuned = copy.deepcopy(model)
    assert tune_model(tuned) == {}
    assert _ops(tuned) == _ops(model)


# -- on the exported engines --------------------------------------------------------------------


def _groupnorms(model_dir: Path, parts: list[str]) -> int:
    """GroupNorm layers in the named diffusers parts of a model folder (the VAE: its decoder)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    loaders = {"unet": UNet2DConditionModel, "controlnet": ControlNetModel, "vae": AutoencoderKL}
    count = 0
    for part in parts:
        module = loaders[part].from_pretrained(model_dir / part)
        module = module.decoder if part == "vae" else module
        count += sum(isinstance(m, torch.nn.GroupNorm) for m in module.modules())
    return count


@pytest.mark.parametrize(("kind", "graph", "parts"), [("pixel", "denoiser", ["unet", "controlnet"]),
                                                        ("latent", "denoiser", ["unet", "controlnet"]),
                                                        ("latent", "vae_decoder", ["vae"])])
def test_every_groupnorm_of_an_exported_graph_is_rewritten(kind, graph, parts):
    exported = exported_engine(kind)
    tuned = tuned_graph(exported.engine_dir / f"{graph}.onnx")
    assert tuned is not None
    assert tuned.rewrites == {"groupnorm_affine": _groupnorms(exported.model_dir, parts)}


def test_text_encoder_has_nothing_to_rewrite():
    # CLIP has LayerNorms only.
    assert tuned_graph(exported_engine("pixel").engine_dir / "text_encoder.onnx") is None


def _feeds_for(session, size: int, batch: int = 2, seed: int = 0) -> dict:
    """Random denoiser inputs at ``size`` px, the text embeddings shaped as the graph declares them."""
    rng = np.random.default_rng(seed)
    hidden = next(i.shape for i in session.get_inputs() if i.name == "encoder_hidden_states")
    return {"sample": rng.standard_normal((batch, 3, size, size), dtype=np.float32),
            "timestep": np.array([999.0, 10.0][:batch], np.float32),
            "encoder_hidden_states": rng.standard_normal((batch, hidden[1], hidden[2]), dtype=np.float32),
            "controlnet_cond": rng.random((batch, 3, size, size), dtype=np.float32),
            "conditioning_scale": np.array([1.0], np.float32)}


@pytest.mark.parametrize("size", [16, 64])
def test_rewritten_denoiser_gives_the_exported_graphs_numbers(size):
    exported = exported_engine("pixel")
    path = exported.engine_dir / "denoiser.onnx"
    plain = build_session(path, "cpu", CPU, 1)
    tuned = build_session(path, "cpu", CPU, 1, tuned=cpu_tuned_graph(path))
    feeds = _feeds_for(plain, size)
    ours, theirs = tuned.run(None, feeds)[0], plain.run(None, feeds)[0]
    assert np.abs(ours - theirs).max() <= 1e-5


def test_a_graph_with_external_weights_loads_them_from_its_folder(tmp_path):
    import onnx

    exported = exported_engine("pixel")
    path, model = denoiser_with_external_weights(tmp_path / "engine")
    tuned = cpu_tuned_graph(path)
    assert tuned is not None
    assert tuned.rewrites == tuned_graph(exported.engine_dir / "denoiser.onnx").rewrites
    rewritten = onnx.load_from_string(tuned.model_bytes)
    external = {t.name for t in rewritten.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert external == {t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert len(external) > 100  # the weights stayed in the data file
    session = build_session(path, "cpu", CPU, 1, tuned=tuned)
    feeds = _feeds_for(session, 16)
    reference = build_session(exported.engine_dir / "denoiser.onnx", "cpu", CPU, 1).run(None, feeds)[0]
    assert np.abs(session.run(None, feeds)[0] - reference).max() <= 1e-5


def test_a_damaged_graph_is_a_model_error_naming_the_file(tmp_path):
    path = tmp_path / "denoiser.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf graph \xff\xff")
    with pytest.raises(ModelError, match="cannot read denoiser.onnx") as info:
        cpu_tuned_graph(path)
    assert info.value.exit_code == 4 and "re-export" in info.value.one_line()
    with pytest.raises(ModelError, match="cannot read denoiser.onnx") as info:
        cpu_stage_plan(path)  # the staged denoiser's way in reads the file the same way
    assert info.value.exit_code == 4 and "re-export" in info.value.one_line()


def test_engine_reports_its_rewrites_and_can_run_without_them():
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate_float

    exported = exported_engine("latent")
    tuned = Engine.load(exported.engine_dir, "cpu", threads=2)
    plain = Engine.load(exported.engine_dir, "cpu", threads=2, cpu_rewrites=False)
    assert set(tuned.describe()["cpu_rewrites"]) == {"denoiser", "vae_decoder"}
    assert plain.describe()["cpu_rewrites"] == {}
    mask = np.zeros((64, 64), bool)
    mask[16:48, 20:44] = True
    settings = SamplerSettings("dpm++", 3, 5.0)
    ours = generate_float(tuned, ["a dermoscopic image of mel"], [mask], [7], settings)
    theirs = generate_float(plain, ["a dermoscopic image of mel"], [mask], [7], settings)
    assert np.abs(np.asarray(ours) - np.asarray(theirs)).max() <= 1e-5
