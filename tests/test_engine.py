"""The engine: provider choice and validation, session checks, caches, and the GPU paths (marked)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import exported_engine  # noqa: E402

from lesionaug.engine import providers  # noqa: E402
from lesionaug.engine.session import (  # noqa: E402
    ShapeProfile,
    TensorrtSettings,
    check_active_provider,
    provider_entries,
)
from lesionaug.errors import BackendError, UsageError  # noqa: E402

GPU = os.environ.get("LESIONAUG_TEST_GPU") == "1"
gpu = pytest.mark.skipif(not GPU, reason="GPU tests run only with LESIONAUG_TEST_GPU=1 on a machine with a GPU")


def test_cpu_is_always_usable_and_auto_picks_the_best():
    usable = providers.usable_providers()
    assert "cpu" in usable
    assert providers.resolve_provider("auto") == usable[0]
    assert providers.resolve_provider("cpu") == "cpu"


@pytest.mark.skipif(GPU, reason="checks the behaviour of a machine without a GPU")
@pytest.mark.parametrize("asked", ["cuda", "tensorrt"])
def test_missing_gpu_provider_is_one_line_exit_4_with_what_is_available(asked):
    with pytest.raises(BackendError) as info:
        providers.resolve_provider(asked)
    err = info.value
    assert err.exit_code == 4
    assert f"provider {asked} is not available" in err.message
    assert "available here: cpu" in err.message
    assert "\n" not in err.one_line()


def test_unknown_provider_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown provider 'rocm'"):
        providers.resolve_provider("rocm")


class _FellBack:
    """An ORT session that silently fell back to the CPU, as onnxruntime-gpu does without a GPU."""

    def get_providers(self):
        return ["CPUExecutionProvider"]


def test_a_silent_fallback_is_caught():
    with pytest.raises(BackendError, match="did not start the cuda provider"):
        check_active_provider(_FellBack(), "cuda", Path("denoiser.onnx"))


@pytest.mark.skipif(GPU, reason="checks the behaviour of a machine without a GPU")
@pytest.mark.slow
def test_engine_load_on_a_missing_provider_fails_before_loading():
    from lesionaug.engine import Engine

    with pytest.raises(BackendError, match="available here: cpu"):
        Engine.load(exported_engine("pixel").engine_dir, "cuda")


def test_tensorrt_options_cache_by_shape_precision_and_version(tmp_path):
    graph_io = {
        "inputs": {
            "sample": ["batch", 4, "8*height_units", "8*width_units"],
            "timestep": ["batch"],
            "encoder_hidden_states": ["batch", 77, 768],
            "controlnet_cond": ["batch", 3, "64*height_units", "64*width_units"],
            "conditioning_scale": [1],
        }
    }
    profile = ShapeProfile(min_batch=1, max_batch=8, height=512, width=512).scaled(2)  # guided: 2 items a job
    entries = provider_entries(
        "tensorrt",
        precision="fp16",
        engine_dir=tmp_path,
        graph="denoiser",
        graph_io=graph_io,
        profile=profile,
        scale=8,
        cuda_graph=False,
        device_id=3,
        tensorrt=TensorrtSettings(workspace_gib=1.5),
    )
    names = [e[0] if isinstance(e, tuple) else e for e in entries]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = entries[0][1]
    assert trt["trt_fp16_enable"] and trt["trt_engine_cache_enable"] and trt["trt_timing_cache_enable"]
    cache = Path(trt["trt_engine_cache_path"])
    assert cache.parent == tmp_path / "trt_cache" and cache.is_dir()
    assert cache.name.startswith("denoiser-fp16-ln32-trt") and cache.name.endswith("b2-16_512x512")
    assert Path(trt["trt_timing_cache_path"]) == tmp_path / "trt_cache"  # shared by every graph and profile
    assert trt["device_id"] == 3 and entries[1][1]["device_id"] == 3
    assert trt["trt_layer_norm_fp32_fallback"] is True
    assert trt["trt_max_workspace_size"] == 1610612736  # 1.5 * 2**30
    assert trt["trt_profile_min_shapes"] == (
        "sample:2x4x64x64,timestep:2,encoder_hidden_states:2x77x768,controlnet_cond:2x3x512x512"
    )
    assert trt["trt_profile_max_shapes"].startswith("sample:16x4x64x64,timestep:16,")
    assert trt["trt_profile_opt_shapes"] == trt["trt_profile_max_shapes"]
    other = provider_entries(
        "tensorrt",
        precision="fp32",
        engine_dir=tmp_path,
        graph="denoiser",
        graph_io=graph_io,
        profile=profile,
        scale=8,
        cuda_graph=False,
    )
    assert other[0][1]["trt_engine_cache_path"] != trt["trt_engine_cache_path"]
    assert "trt_layer_norm_fp32_fallback" not in other[0][1]  # fp32 engines have nothing to fall back from
    assert "trt_max_workspace_size" not in other[0][1]  # TensorRT's own default unless limited


def test_unwritable_engine_folder_keeps_tensorrt_caches_in_the_cache_folder(tmp_path, monkeypatch):
    from lesionaug.engine.provider_options import tensorrt_cache_dir

    # A folder nobody can create trt_cache/ in (its "parent" is a file; chmod does not stop root).
    engine = tmp_path / "engine.onnx-file"
    engine.write_text("not a folder")
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    path = tensorrt_cache_dir(engine, "denoiser", "fp16", None)
    assert path.is_dir() and path.is_relative_to(tmp_path / "cache" / "tensorrt")
    assert path.name.startswith("denoiser-fp16-ln32-trt") and path.name.endswith("-dynamic")


def test_cuda_graphs_are_asked_for_only_on_cuda(tmp_path):
    cuda = provider_entries(
        "cuda",
        precision="fp16",
        engine_dir=tmp_path,
        graph="denoiser",
        graph_io={},
        profile=None,
        scale=8,
        cuda_graph=True,
    )
    assert cuda == [
        ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE", "enable_cuda_graph": "1"})
    ]
    assert provider_entries(
        "cpu",
        precision="fp32",
        engine_dir=tmp_path,
        graph="denoiser",
        graph_io={},
        profile=None,
        scale=8,
        cuda_graph=True,
    ) == ["CPUExecutionProvider"]


@pytest.mark.slow
def test_repeated_prompts_are_encoded_once():
    from lesionaug.engine import Engine

    engine = Engine.load(exported_engine("pixel").engine_dir, "cpu")
    runner = engine.runners["text_encoder"]
    calls = []
    real = runner.session.run

    class Counting:
        def run(self, names, feeds):
            calls.append(feeds["input_ids"].shape)
            return real(names, feeds)

    runner.session = Counting()
    first = engine.encode_prompts(["a", "b", "a", "a"])
    again = engine.encode_prompts(["b", "a"])
    assert len(calls) == 2 and all(shape == (1, 32) for shape in calls)
    assert first.shape == (4, 32, 32)
    assert np.array_equal(first[0].numpy(), first[2].numpy()) and np.array_equal(again[0].numpy(), first[1].numpy())


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_engine_matches_cpu_engine(provider):
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate_float

    if provider not in providers.usable_providers():
        pytest.skip(f"{provider} is not usable on this machine: {providers.probe_provider(provider)[1]}")
    built = exported_engine("latent")
    mask = np.zeros((64, 64), bool)
    mask[16:48, 20:44] = True
    settings = SamplerSettings("dpm++", 6, 5.0)
    cpu = generate_float(Engine.load(built.engine_dir, "cpu"), ["a lesion"], [mask], [3], settings)
    engine = Engine.load(built.engine_dir, provider, profile=ShapeProfile(1, 1, 64, 64))
    assert engine.provider == provider
    got = generate_float(engine, ["a lesion"], [mask], [3], settings)
    assert np.abs(got - cpu).max() < 1e-2


@pytest.mark.slow
def test_nan_images_are_refused_not_returned(monkeypatch):
    """A half-precision overflow must fail the batch loudly, never become an image file."""
    import torch

    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate
    from lesionaug.errors import ModelError

    engine = Engine.load(exported_engine("pixel").engine_dir, "cpu")
    real = engine.decode

    def poisoned(sample):
        out = real(sample).clone()
        out[1, 0, 0, 0] = torch.nan
        return out

    monkeypatch.setattr(engine, "decode", poisoned)
    mask = np.zeros((32, 32), bool)
    with pytest.raises(ModelError, match="NaN in 1 of 2 images"):
        generate(engine, ["a", "b"], [mask, mask], [0, 1], SamplerSettings("ddim", 1, 1.0))


def test_split_sizes_are_contiguous_and_balanced():
    from lesionaug.engine.binding import split_sizes

    assert split_sizes(16, 2) == [8, 8]
    assert split_sizes(5, 2) == [3, 2]
    assert split_sizes(7, 4) == [2, 2, 2, 1]
    assert split_sizes(3, 3) == [1, 1, 1]


def _denoise_inputs(engine, batch: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    size = engine.card.size_multiple * 2
    states = torch.randn((batch, engine.card.token_length, engine.card.hidden_size), generator=g)
    return (torch.randn((batch, engine.card.channels, size // engine.card.scale, size // engine.card.scale),
                        generator=g),
            torch.full((batch,), 400.0), states, torch.rand((batch, 3, size, size), generator=g),
            torch.tensor([0.8]))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pixel", "latent"])
def test_cpu_batches_split_across_cores_give_the_threaded_sessions_result(kind):
    """Two cores: a batch of >= 2 runs as concurrent single-threaded slices, giving what one
    two-threaded session computes for the whole batch (to 1e-6; identical when measured); a batch of 1
    goes to that threaded session. (The denoiser whole, as it runs without its stages; each stage of
    engine/stages.py runs on such a runner too.)"""
    from lesionaug.engine import Engine
    from lesionaug.engine.binding import GraphRunner, SplitBatchRunner

    engine = Engine.load(exported_engine(kind).engine_dir, "cpu", threads=2, cpu_stages=False)
    runner = engine.runners["denoiser"]
    assert isinstance(runner, SplitBatchRunner) and runner.workers == 2
    assert isinstance(engine.runners["text_encoder"], GraphRunner)  # prompts come one at a time
    assert runner._threaded is None  # not built until a batch smaller than the cores comes

    slices = []
    real_run = runner.session.run

    class Recording:
        def run(self, names, feeds):
            slices.append(feeds["sample"].shape[0])
            return real_run(names, feeds)

    runner.session = Recording()
    sample, timestep, states, control, scale = _denoise_inputs(engine, 5)
    split = engine.denoise(sample, timestep, states, control, scale)
    assert sorted(slices) == [2, 3]

    whole = runner._threaded_session()
    feeds = {"sample": sample.numpy(), "timestep": timestep.numpy(), "encoder_hidden_states": states.numpy(),
             "controlnet_cond": control.numpy(), "conditioning_scale": scale.numpy()}
    expected = whole.run(["noise_pred"], feeds)[0]
    assert split.shape == expected.shape
    assert np.abs(split.numpy() - expected).max() <= 1e-6

    slices.clear()
    one = engine.denoise(sample[:1], timestep[:1], states[:1], control[:1], scale)
    assert slices == []  # the threaded session ran it
    assert np.abs(one.numpy() - expected[:1]).max() <= 1e-6


@pytest.mark.slow
def test_one_thread_means_plain_sessions():
    from lesionaug.engine import Engine
    from lesionaug.engine.binding import GraphRunner

    engine = Engine.load(exported_engine("latent").engine_dir, "cpu", threads=1, cpu_stages=False)
    assert all(isinstance(r, GraphRunner) for r in engine.runners.values())
    assert engine.runners["denoiser"].session.get_session_options().intra_op_num_threads == 1

    staged = Engine.load(exported_engine("latent").engine_dir, "cpu", threads=1).runners["denoiser"]
    for stage in (staged.control, staged.shared, staged.text):
        assert stage.workers == 1 and stage.session.get_session_options().intra_op_num_threads == 1
