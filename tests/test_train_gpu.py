"""Training on GPUs, tested on the CPU with tiny models: gradient checkpointing, SDPA attention, the
8-bit optimizer's switch, gradient sync under accumulation, per-process latent caches, dihedral
augmentation, starting from a ControlNet, the SDXL refusal, and the folder as one diffusers pipeline."""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest
from test_train import PROVENANCE, blob_set, state_hash, tiny_config
from tiny_sd import write_tiny_sd

from lesionaug.errors import BackendError, ConfigError, ModelError, UsageError
from lesionaug.progress import SILENT
from lesionaug.train.config import TrainConfig
from lesionaug.train.loop import (
    StageObjective,
    TrainingStage,
    _epoch_order,
    batch_indices,
    dihedral,
    make_optimizer,
    rank_samples,
    run_stage,
)
from lesionaug.train.run import load_parts, make_accelerator, run_training


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def sd_config(base, **kw) -> TrainConfig:
    return TrainConfig(**{"base": str(base), "resolution": 32, "steps": 2, "batch_size": 2, "sample_steps": 2,
                          "num_samples": 2, **kw}).resolved()


def test_one_process_draws_batches_as_before():
    """World 1: batch b of epoch e is permutation(e)[b*B:(b+1)*B] of all samples (the formula runs resume on)."""
    for micro in range(7):
        epoch, pos = divmod(micro, 10 // 3)
        expected = _epoch_order(10, 0, 1, epoch)[pos * 3 : pos * 3 + 3].tolist()
        assert batch_indices(10, 3, 1, 0, 0, 1, micro) == expected


def test_each_process_trains_on_its_own_share():
    shares = [rank_samples(9, 2, rank, seed=4) for rank in (0, 1)]
    assert [len(s) for s in shares] == [4, 4] and not set(shares[0]) & set(shares[1])
    for rank in (0, 1):
        drawn = {i for m in range(6) for i in batch_indices(9, 2, 2, rank, 4, 0, m)}
        assert drawn == set(shares[rank])  # three epochs of two batches: only its own samples
    assert rank_samples(5, 1, 0, 0) == [0, 1, 2, 3, 4]


def test_dihedral_turns_by_hand():
    import torch

    x = torch.tensor([[1, 2], [3, 4]])
    assert dihedral(x, 0).tolist() == [[1, 2], [3, 4]]
    assert dihedral(x, 1).tolist() == [[2, 4], [1, 3]]  # a quarter turn anticlockwise
    assert dihedral(x, 2).tolist() == [[4, 3], [2, 1]]
    assert dihedral(x, 4).tolist() == [[2, 1], [4, 3]]  # mirrored
    assert len({tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}) == 8


def test_dihedral_pixels_and_masks_turn_together():
    """Blob images are dark red (90) exactly where their mask is, skin (200) elsewhere: after the same
    turn they still are ([-1, 1] pixels: 90 -> -0.29, 200 -> 0.57, plus noise under 12)."""
    import torch

    data = blob_set(n=4, size=16)
    config = tiny_config(dihedral=True, resolution=16)
    parts = load_parts(config, data.prompts)
    objective = StageObjective(parts, data, TrainingStage("controlnet", 1, 0, 1, 1e-4), config, "cpu", SILENT)
    turns = [1, 3, 4, 6]
    x0 = objective.clean_sample([0, 1, 2, 3], torch.Generator(), turns)
    control = objective._turned(data.control([0, 1, 2, 3]), turns)
    for k, turn in enumerate(turns):
        assert torch.equal(x0[k], dihedral(data.pixels([k])[0], turn))
        lesion = control[k, 0].bool()
        red = x0[k][0]
        assert lesion.any() and (red[lesion] < -0.1).all() and (red[~lesion] > 0.4).all()


@pytest.mark.slow
def test_latent_cache_holds_each_turn_of_this_process_samples_only(tiny_sd):
    import torch

    from lesionaug.train.loop import vae_moments

    data = blob_set(n=5)
    config = sd_config(tiny_sd, dihedral=True)
    parts = load_parts(config, data.prompts)
    objective = StageObjective(parts, data, TrainingStage("controlnet", 0, 0, 1, 1e-4), config, "cpu", SILENT,
                               rank=1, world=2)
    own = rank_samples(5, 2, 1, config.seed)
    means, _ = objective.latent_cache
    assert means.shape[:2] == (8, 2) and objective.own == own
    with torch.no_grad():
        expected, _ = vae_moments(parts, dihedral(data.pixels([own[1]]), 6))
    assert torch.allclose(means[6, 1], expected[0], atol=1e-6)


class _RecordingAccelerator:
    """The real single-process accelerator, recording which networks ``no_sync`` was entered for."""

    def __init__(self, real):
        self._real, self.no_sync_calls = real, []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def no_sync(self, model):
        self.no_sync_calls.append(type(model).__name__)
        return self._real.no_sync(model)


@pytest.mark.slow
def test_gradients_sync_only_on_the_last_micro_batch(tiny_sd):
    data = blob_set()
    config = sd_config(tiny_sd, grad_accum=3)
    parts = load_parts(config, data.prompts)
    accelerator = _RecordingAccelerator(make_accelerator("no"))
    run_stage(parts, data, TrainingStage("controlnet", 0, 0, 2, 1e-4), config, accelerator, SILENT)
    assert accelerator.no_sync_calls == ["ControlNetModel"] * 4  # 2 steps x micro-batches 1 and 2 of 3


@pytest.mark.slow
def test_gradient_checkpointing_and_sdpa_change_memory_not_results(tiny_sd):
    from diffusers.models.attention_processor import AttnProcessor2_0

    data = blob_set()
    losses, weights = [], []
    for checkpointing in (False, True):
        config = sd_config(tiny_sd, gradient_checkpointing=checkpointing)
        parts = load_parts(config, data.prompts)
        result = run_stage(parts, data, TrainingStage("controlnet", 0, 0, 2, 1e-4), config, make_accelerator("no"), SILENT)
        losses.append(result.losses)
        weights.append(state_hash(parts.controlnet))
        assert parts.unet.is_gradient_checkpointing is checkpointing
        assert {type(p) for p in parts.unet.attn_processors.values()} == {AttnProcessor2_0}
        assert {type(p) for p in parts.controlnet.attn_processors.values()} == {AttnProcessor2_0}
    assert losses[0] == losses[1] and weights[0] == weights[1]


def test_eight_bit_adam_needs_bitsandbytes(monkeypatch):
    import torch

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # an import of it fails
    with pytest.raises(BackendError, match="needs bitsandbytes"):
        make_optimizer("adamw8bit", [torch.nn.Parameter(torch.zeros(2))], 1e-3)

    class AdamW8bit(torch.optim.AdamW):
        pass

    monkeypatch.setitem(sys.modules, "bitsandbytes", types.SimpleNamespace(optim=types.SimpleNamespace(AdamW8bit=AdamW8bit)))
    optimizer = make_optimizer("adamw8bit", [torch.nn.Parameter(torch.zeros(2))], 1e-3)
    assert type(optimizer) is AdamW8bit and optimizer.defaults["weight_decay"] == 1e-2
    with pytest.raises(UsageError, match="unknown optimizer"):
        TrainConfig(optimizer="lion")


def test_validation_grids_use_generations_guidance():
    from lesionaug.engine.sampler import DEFAULT_GUIDANCE

    assert TrainConfig().sample_guidance == DEFAULT_GUIDANCE == 7.5


@pytest.mark.slow
def test_training_starts_from_a_given_controlnet(tiny_sd, tmp_path):
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    start = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for conv in [*start.controlnet_down_blocks, start.controlnet_mid_block]:
            conv.weight.normal_(0, 0.01)
    start.save_pretrained(tmp_path / "start", safe_serialization=True)
    parts = load_parts(sd_config(tiny_sd, controlnet=str(tmp_path / "start")), ["a"])
    assert state_hash(parts.controlnet) == state_hash(start)

    other = ControlNetModel(block_out_channels=(16, 32, 32), down_block_types=("CrossAttnDownBlock2D",
                            "CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=32, norm_num_groups=8,
                            attention_head_dim=8, layers_per_block=1)
    other.save_pretrained(tmp_path / "other", safe_serialization=True)
    with pytest.raises(ModelError, match="block_out_channels"):
        load_parts(sd_config(tiny_sd, controlnet=str(tmp_path / "other")), ["a"])
    with pytest.raises(UsageError, match="--controlnet starts from a ControlNet of a Stable Diffusion base"):
        TrainConfig(controlnet=str(tmp_path / "start"))


def test_an_sdxl_base_is_refused_before_any_weights_load(tiny_sd, tmp_path, monkeypatch):
    from diffusers import UNet2DConditionModel

    base = shutil.copytree(tiny_sd, tmp_path / "xl")
    config_path = base / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(addition_embed_type="text_time", addition_time_embed_dim=8)
    config_path.write_text(json.dumps(config))

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(UNet2DConditionModel, "from_pretrained", no_weights)
    with pytest.raises(ConfigError) as info:
        load_parts(sd_config(base), ["a"])
    assert "Stable Diffusion XL" in info.value.message and "\n" not in info.value.one_line()


@pytest.mark.slow
def test_the_model_folder_loads_as_one_diffusers_pipeline(tiny_sd, tmp_path):
    import torch
    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image

    data = blob_set()
    config = sd_config(tiny_sd, steps=1)
    out = tmp_path / "model"
    run_training(load_parts(config, data.prompts), lambda: data, lambda: data, out, config, PROVENANCE, SILENT)
    index = json.loads((out / "model_index.json").read_text())
    assert index["controlnet"] == ["diffusers", "ControlNetModel"] and index["vae"] == ["diffusers", "AutoencoderKL"]
    pipe = StableDiffusionControlNetPipeline.from_pretrained(out, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    mask = Image.fromarray((data.masks[0, 0].numpy() * 255).astype(np.uint8)).convert("RGB")
    image = pipe("a dermoscopic image of melanoma", image=mask, height=32, width=32, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()
