"""The GPU code paths, run on the CPU: shape profiles, CUDA graph decisions, device-bound runners, and
``Engine.load`` on the CUDA and TensorRT providers with ONNX Runtime's session faked by CPU sessions.

What needs a real GPU (TensorRT builds, CUDA graph capture, the parity with diffusers on CUDA) is in
benchmarks/gpu_check.sh; everything before the GPU is exercised here.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import exported_engine  # noqa: E402

from lesionaug.engine import loaders  # noqa: E402
from lesionaug.engine.binding import DeviceRunner, GraphRunner  # noqa: E402
from lesionaug.engine.cuda_graphs import cpu_placed_nodes, cuda_graph_blocker  # noqa: E402
from lesionaug.engine.provider_options import ShapeProfile  # noqa: E402
from lesionaug.engine.session import build_session  # noqa: E402
from lesionaug.errors import BackendError, ConfigError  # noqa: E402


@pytest.mark.parametrize(
    "n_jobs, batch_size, expected",
    [
        (10, 4, (2, 4)),  # batches 4, 4, 2
        (8, 4, (4, 4)),  # batches 4, 4
        (3, 4, (3, 3)),  # one batch of 3
        (1, 1, (1, 1)),
        (9, 8, (1, 8)),  # batches 8, 1
    ],
)
def test_run_profile_covers_every_batch_the_run_cuts(n_jobs, batch_size, expected):
    profile = ShapeProfile.for_run(n_jobs, batch_size, 512, 384)
    assert (profile.min_batch, profile.max_batch, profile.opt) == (*expected, expected[1])
    assert profile.key == f"b{expected[0]}-{expected[1]}_512x384"


def test_run_profile_with_batches_split_into_engine_calls():
    # Batches of 10, 10, 3 with at most 4 jobs a call: calls of 4, 4, 2 and 3 jobs.
    profile = ShapeProfile.for_run(23, 10, 64, 64, per_call=4)
    assert (profile.min_batch, profile.max_batch) == (2, 4)


def test_profile_in_graph_items_and_its_checks():
    guided = ShapeProfile(2, 4, 64, 64, opt_batch=3).scaled(2)
    assert (guided.min_batch, guided.opt, guided.max_batch) == (4, 6, 8)
    assert guided.key == "b4-8o6_64x64"
    with pytest.raises(ConfigError):
        ShapeProfile(4, 2, 64, 64)


def _shape_chain_model(fp16_scale: bool = False):
    """x (float) -> Shape -> Gather(0) -> Unsqueeze -> Concat([b], [-1]) -> Reshape(x, that).

    By the CUDA provider's rule (ORT fallback_cpu_capability.cc): Shape's output is in host memory;
    Gather reads it plus an initializer -> CPU; Unsqueeze reads Gather's output and an initializer ->
    CPU; Concat reads Unsqueeze's output and an initializer -> CPU; Reshape reads the Concat output
    as its shape, which its CUDA kernel takes from host memory anyway -> stays on the GPU. 3 nodes.
    With ``fp16_scale`` a Cast to float16 follows Gather and a Mul by a float16 initializer: the
    Cast reads a host int64 -> CPU (4 nodes); the Mul reads float16 -> GPU.
    """
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 32])
    inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
             helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1])]
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
             helper.make_node("Concat", ["batch1", "minus_one"], ["new_shape"], axis=0),
             helper.make_node("Reshape", ["x", "new_shape"], ["y"])]
    outputs = [y]
    if fp16_scale:
        inits.append(helper.make_tensor("half", TensorProto.FLOAT16, [], [0.5]))
        nodes += [helper.make_node("Cast", ["batch"], ["batch_h"], to=TensorProto.FLOAT16),
                  helper.make_node("Mul", ["batch_h", "half"], ["scaled"])]
        outputs.append(helper.make_tensor_value_info("scaled", TensorProto.FLOAT16, []))
    graph = helper.make_graph(nodes, "chain", [x], outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])


def test_cpu_placed_nodes_follow_the_cuda_providers_rule():
    assert dict(cpu_placed_nodes(_shape_chain_model())) == {"Gather": 1, "Unsqueeze": 1, "Concat": 1}
    assert dict(cpu_placed_nodes(_shape_chain_model(fp16_scale=True))) == {
        "Gather": 1, "Unsqueeze": 1, "Concat": 1, "Cast": 1}


def test_a_graph_without_shape_arithmetic_may_use_cuda_graphs(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    onnx.save(model, str(tmp_path / "static.onnx"))
    onnx.save(_shape_chain_model(), str(tmp_path / "chain.onnx"))
    assert cuda_graph_blocker(tmp_path / "static.onnx") is None
    assert "3 shape nodes of chain.onnx on the CPU (Gather 1, Unsqueeze 1, Concat 1)" in cuda_graph_blocker(
        tmp_path / "chain.onnx")


@pytest.mark.slow
def test_exported_denoisers_keep_shape_arithmetic_on_the_cpu():
    """The dynamo exporter's dynamic axes leave Shape -> Slice -> Concat chains in every graph, so
    the engine does not ask for CUDA graphs for them (the GPU check measures what ORT does)."""
    for kind in ("pixel", "latent"):
        path = exported_engine(kind).engine_dir / "denoiser.onnx"
        blocker = cuda_graph_blocker(path)
        assert blocker is not None and "Slice" in blocker and "Concat" in blocker


def _denoiser_feeds(engine, batch: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    side = engine.card.size_multiple
    return {"sample": torch.randn((batch, engine.card.channels, side // engine.card.scale, side // engine.card.scale),
                                  generator=g),
            "timestep": torch.full((batch,), 400.0),
            "encoder_hidden_states": torch.randn((batch, engine.card.token_length, engine.card.hidden_size),
                                                 generator=g),
            "controlnet_cond": torch.rand((batch, 3, side, side), generator=g),
            "conditioning_scale": torch.tensor([0.8])}


@pytest.fixture(scope="module")
def plain_pixel():
    """The tiny pixel engine on the CPU as exported (one thread, no rewrites, no stages)."""
    from lesionaug.engine import Engine

    return Engine.load(exported_engine("pixel").engine_dir, "cpu", threads=1, cpu_rewrites=False, cpu_stages=False)


@pytest.mark.slow
def test_device_bound_runner_gives_the_host_runners_result_and_uploads_constants_once(plain_pixel, monkeypatch):
    import onnxruntime as ort

    host = plain_pixel.runners["denoiser"]
    assert isinstance(host, GraphRunner)
    runner = DeviceRunner(host.session, "noise_pred", "cpu", 0)
    uploads = []
    real = ort.OrtValue.ortvalue_from_numpy

    def counting(array, device_type="cpu", device_id=0, *args):
        uploads.append(array.shape)
        return real(array, device_type, device_id, *args)

    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", staticmethod(counting))
    feeds = _denoiser_feeds(plain_pixel, 2)
    shape = tuple(feeds["sample"].shape)
    assert np.array_equal(runner(feeds, shape).numpy(), host(feeds, shape).numpy())
    assert len(uploads) == 5
    step = {**feeds, "sample": feeds["sample"] * 0.5, "timestep": feeds["timestep"] - 100}
    assert np.array_equal(runner(step, shape).numpy(), host(step, shape).numpy())
    assert len(uploads) == 7  # only sample and timestep travelled again
    feeds["encoder_hidden_states"].mul_(2)  # changed in place: the device copy is stale
    runner(step, shape)  # the same step tensors again: only the changed embeddings travel
    assert len(uploads) == 8


class _FailingFirstGraphRun:
    """A session whose first CUDA-graph run fails, as a capture does when a node cannot be captured."""

    def __init__(self, session):
        self.session, self.graph_runs = session, 0

    def io_binding(self):
        return self.session.io_binding()

    def run_with_iobinding(self, binding, options=None):
        if options is not None:
            self.graph_runs += 1
            raise RuntimeError("CUDA failure 900: operation not permitted when stream is capturing")
        return self.session.run_with_iobinding(binding)


@pytest.mark.slow
def test_a_failed_capture_falls_back_once_and_the_run_goes_on(plain_pixel):
    host = plain_pixel.runners["denoiser"]
    notes, rebuilt = [], []
    failing = _FailingFirstGraphRun(host.session)

    def rebuild():
        rebuilt.append(True)
        return host.session

    runner = DeviceRunner(failing, "noise_pred", "cpu", 0, cuda_graph=True, rebuild=rebuild, on_fallback=notes.append)
    feeds = _denoiser_feeds(plain_pixel, 1)
    shape = tuple(feeds["sample"].shape)
    first = runner(feeds, shape)
    second = runner({**feeds, "sample": feeds["sample"] + 1}, shape)
    assert failing.graph_runs == 1 and rebuilt == [True] and not runner.cuda_graph
    assert len(notes) == 1 and notes[0].startswith("CUDA graph capture failed on the first run (CUDA failure 900")
    assert np.array_equal(first.numpy(), host(feeds, shape).numpy())
    assert second.shape == first.shape


@pytest.mark.slow
def test_captured_buffers_are_updated_in_place_and_match_the_host_runner(plain_pixel):
    """The CUDA-graph path on CPU values: fixed buffers per shape, updated only where inputs changed."""
    host = plain_pixel.runners["denoiser"]
    runner = DeviceRunner(host.session, "noise_pred", "cpu", 0, cuda_graph=True, rebuild=lambda: host.session)
    feeds = _denoiser_feeds(plain_pixel, 2)
    shape = tuple(feeds["sample"].shape)
    for k in range(3):
        step = {**feeds, "sample": feeds["sample"] * (1 + k)}
        assert np.array_equal(runner(step, shape).numpy(), host(step, shape).numpy())
    assert runner.cuda_graph and len(runner._shapes) == 1
    captured = next(iter(runner._shapes.values()))
    assert captured.sources["encoder_hidden_states"][0] is feeds["encoder_hidden_states"]


class _FakeGpuSessions:
    """``build_session`` for GPU providers answered by CPU sessions, recording what each was asked for."""

    def __init__(self, fail_cuda_graph: bool = False):
        self.asked: list[tuple[str, str, list]] = []
        self.fail_cuda_graph = fail_cuda_graph

    def __call__(self, path, provider, providers, threads=None, **kwargs):
        self.asked.append((path.name, provider, providers))
        options = providers[0][1] if isinstance(providers[0], tuple) else {}
        if self.fail_cuda_graph and options.get("enable_cuda_graph") == "1":
            raise BackendError(f"cannot start cuda for {path.name} (CUDA graph is not supported)", path=path)
        return build_session(path, "cpu", ["CPUExecutionProvider"], 1)


def _load_faked(monkeypatch, provider: str, fake: _FakeGpuSessions, **kwargs):
    from lesionaug.engine import Engine, runtime

    monkeypatch.setattr(runtime, "resolve_provider", lambda asked: provider)
    monkeypatch.setattr(loaders, "build_session", fake)
    monkeypatch.setattr(loaders, "DEVICE_TYPE", "cpu")
    return Engine.load(exported_engine("pixel").engine_dir, provider, **kwargs)


@pytest.mark.slow
def test_cuda_engine_binds_device_values_on_the_chosen_gpu(monkeypatch, plain_pixel):
    from lesionaug.engine.sampler import SamplerSettings, generate_float

    fake = _FakeGpuSessions()
    engine = _load_faked(monkeypatch, "cuda", fake, device=2)
    assert {name for name, _, _ in fake.asked} == {"text_encoder.onnx", "denoiser.onnx"}
    for _, provider, entries in fake.asked:
        assert provider == "cuda" and entries[0][0] == "CUDAExecutionProvider" and entries[0][1]["device_id"] == 2
        assert "enable_cuda_graph" not in entries[0][1]  # the exported graphs have CPU shape nodes
    assert all(isinstance(r, DeviceRunner) and r.device_id == 2 for r in engine.runners.values())
    assert any(n.startswith("CUDA graphs off: the CUDA provider would run") for n in engine.notes)
    assert engine.describe()["device"] == "cuda:2" and engine.device == "cpu"  # torch stays on the host
    mask = np.zeros((32, 32), bool)
    mask[8:24, 10:22] = True
    settings = SamplerSettings("ddim", 2, 3.0)
    got = generate_float(engine, ["a lesion"], [mask], [5], settings)
    assert np.array_equal(got, generate_float(plain_pixel, ["a lesion"], [mask], [5], settings))


@pytest.mark.slow
def test_forced_cuda_graphs_that_cannot_start_are_dropped_with_a_note(monkeypatch):
    fake = _FakeGpuSessions(fail_cuda_graph=True)
    engine = _load_faked(monkeypatch, "cuda", fake, cuda_graph="force")
    denoiser = [entries for name, _, entries in fake.asked if name == "denoiser.onnx"]
    assert [e[0][1].get("enable_cuda_graph") for e in denoiser] == ["1", None]  # asked, refused, rebuilt
    assert not engine.runners["denoiser"].cuda_graph
    assert any("CUDA graphs not possible for denoiser.onnx" in n for n in engine.notes)
    assert not engine.describe()["cuda_graph"]


@pytest.mark.slow
def test_tensorrt_engine_gets_each_graphs_profile_and_device(monkeypatch, tmp_path):
    fake = _FakeGpuSessions()
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path))
    engine = _load_faked(monkeypatch, "tensorrt", fake, device=1, profile=ShapeProfile.for_run(10, 4, 32, 32))
    options = {name: entries[0][1] for name, _, entries in fake.asked}
    assert all(o["device_id"] == 1 for o in options.values())
    # The denoiser sees each job twice with guidance: batches of 2 and 4 jobs are 4 and 8 graph items.
    assert options["denoiser.onnx"]["trt_profile_min_shapes"].startswith("sample:4x3x32x32,timestep:4,")
    assert options["denoiser.onnx"]["trt_profile_max_shapes"].startswith("sample:8x3x32x32,timestep:8,")
    assert options["denoiser.onnx"]["trt_engine_cache_path"].endswith("b4-8_32x32")
    # Prompts are encoded one at a time.
    assert options["text_encoder.onnx"]["trt_profile_max_shapes"] == "input_ids:1x32"
    assert "trt_layer_norm_fp32_fallback" not in options["denoiser.onnx"]  # an fp32 engine
    assert engine.provider == "tensorrt"


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [{"cuda_graph": "sometimes"}, {"device": -1}])
def test_engine_options_are_checked_before_loading(kwargs):
    from lesionaug.engine import Engine

    from lesionaug.errors import UsageError

    with pytest.raises(UsageError, match="bad engine options"):
        Engine.load(exported_engine("pixel").engine_dir, "cpu", **kwargs)
