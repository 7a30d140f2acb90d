"""The training core on in-memory tensors: learning, locked weights, exact resume, binary masks, folders."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")

from tiny_sd import write_tiny_sd

from lesionaug.errors import ConfigError, DatasetError, ModelError, UsageError
from lesionaug.progress import SILENT
from lesionaug.train.config import TrainConfig
from lesionaug.train.data import (
    check_binary_control,
    resize_and_crop,
    tensor_training_set,
)
from lesionaug.train.loop import StageObjective, TrainingStage, batch_indices, min_snr_weights, run_stage
from lesionaug.train.run import Provenance, load_parts, make_accelerator, run_training

PROMPTS = ["a dermoscopic image of melanoma", "a dermoscopic image of melanocytic nevus"]
PROVENANCE = Provenance("split-fp", "dataset-fp", ["a", "b"])


def blob_set(n: int = 4, size: int = 32, seed: int = 0):
    """Discs on skin-coloured noise: images (uint8) whose lesion is where the mask says."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(size * 0.3, size * 0.7, 2).tolist() + [rng.uniform(size * 0.15, size * 0.3)]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        image = np.empty((3, size, size), np.uint8)
        image[:] = np.array([200, 150, 130], np.uint8)[:, None, None]
        image[:, mask] = np.array([90, 50, 40], np.uint8)[:, None]
        images.append(np.clip(image + rng.integers(0, 12, image.shape), 0, 255).astype(np.uint8))
        masks.append(mask)
    prompts = [PROMPTS[i % 2] for i in range(n)]
    return tensor_training_set(np.stack(images), np.stack(masks), prompts)


def tiny_config(**kw) -> TrainConfig:
    base = {"model_size": "tiny", "resolution": 32, "batch_size": 2, "sample_steps": 2, "num_samples": 2, "prompt_dropout": 0.2}
    return TrainConfig(**{**base, **kw}).resolved()


def state_hash(module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def folder_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out = {}
    for file in sorted(model_dir.glob("*/*.safetensors")):
        for k, v in load_file(str(file)).items():
            out[f"{file.parent.name}/{k}"] = v
    return out


class StopAfter:
    """A reporter that interrupts training after ``n`` steps, as a crash or Ctrl-C would."""

    class Stop(Exception):
        pass

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: int | None = None):
        outer = self

        class Task:
            def advance(self, n: int = 1, **fields) -> None:
                if description.startswith("stage"):
                    outer.seen += n
                    if outer.seen >= outer.n:
                        raise StopAfter.Stop()

            def update(self, **fields) -> None:
                pass

        yield Task()


def held_out_loss(parts, data, stage, config) -> float:
    """The stage-1 loss on pairs 0 and 1 over the same 16 draws of noise and timesteps (before and after training)."""
    objective = StageObjective(parts, data, stage, config, "cpu", SILENT)
    generator = torch.Generator().manual_seed(123)
    live = {"unet": parts.unet, "text_encoder": parts.text_encoder}
    with torch.no_grad():
        return float(np.mean([float(objective.loss([0, 1], generator, live)) for _ in range(16)]))


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_loss_falls_when_overfitting_one_batch(prediction_type):
    config = tiny_config(
        base_steps=25,
        steps=0,
        prompt_dropout=0.0,
        base_lr=3e-3,
        prediction_type=prediction_type,
        zero_terminal_snr=prediction_type == "v_prediction",
    )
    data = blob_set(n=2)
    parts = load_parts(config, data.prompts)
    assert parts.noise_scheduler.config.prediction_type == prediction_type
    stage = TrainingStage("base", 0, 0, 25, 3e-3)

    before = held_out_loss(parts, data, stage, config)
    run_stage(parts, data, stage, config, make_accelerator("no"), SILENT)
    after = held_out_loss(parts, data, stage, config)
    assert after < 0.6 * before, (before, after)


def test_controlnet_stage_leaves_the_base_bit_identical():
    config = tiny_config(base_steps=0, steps=3, lr=1e-3)
    data = blob_set()
    parts = load_parts(config, data.prompts)
    before = {"unet": state_hash(parts.unet), "text_encoder": state_hash(parts.text_encoder)}
    run_stage(parts, data, TrainingStage("controlnet", 1, 0, 3, 1e-3), config, make_accelerator("no"), SILENT)
    assert {"unet": state_hash(parts.unet), "text_encoder": state_hash(parts.text_encoder)} == before
    assert not any(p.requires_grad for p in parts.unet.parameters())
    assert parts.controlnet is not None


@pytest.mark.parametrize(
    ("stop_at", "ema", "low"), [(2, 0.0, 0.0), (5, 0.0, 0.0), (5, 0.9, 0.0), (5, 0.0, 0.5)]
)  # in stage 1, in stage 2; EMA; half the steps at half size (stopped at the switch to full size)
def test_resume_equals_an_uninterrupted_run(tmp_path, stop_at, ema, low):
    config = tiny_config(base_steps=3, steps=4, checkpoint_every=2, ema_decay=ema, low_res_fraction=low)
    data = blob_set()

    def train(out, reporter, **kw):
        parts = load_parts(config, data.prompts)
        return run_training(parts, lambda: data, lambda: data, out, config, PROVENANCE, reporter, **kw)

    train(tmp_path / "whole", SILENT)
    with pytest.raises(StopAfter.Stop):
        train(tmp_path / "cut", StopAfter(stop_at))
    assert not (tmp_path / "cut" / "lesionaug.json").exists()  # an interrupted folder never looks complete
    result = train(tmp_path / "cut", SILENT, resume=True)
    assert result["resumed_from_step"] == 2 * (stop_at // 2)
    whole, cut = folder_tensors(tmp_path / "whole"), folder_tensors(tmp_path / "cut")
    assert whole.keys() == cut.keys() and len(whole) > 0
    for key in whole:
        assert np.array_equal(whole[key], cut[key]), key


def test_the_weight_average_follows_its_warmed_up_decay():
    from lesionaug.train.ema import WeightAverage

    param = torch.zeros(2)
    average = WeightAverage([param], decay=0.9)
    param += 1.0
    average.update([param])  # decay min(0.9, 2/11): 2/11 * 0 + 9/11 * 1
    assert average.shadow[0].tolist() == pytest.approx([9 / 11] * 2)
    for _ in range(200):
        average.update([param])
    param.zero_()
    average.update([param])  # the decay has reached 0.9: 0.9 * (about 1) + 0.1 * 0
    assert average.shadow[0].tolist() == pytest.approx([0.9] * 2, abs=1e-6)
    average.copy_to([param])
    assert param.tolist() == pytest.approx([0.9] * 2, abs=1e-6)


def test_ema_saves_averaged_weights_not_the_last_steps():
    data = blob_set()
    weights = {}
    for ema in (0.0, 0.9):
        config = tiny_config(base_steps=0, steps=4, lr=1e-3, ema_decay=ema)
        parts = load_parts(config, data.prompts)
        run_stage(parts, data, TrainingStage("controlnet", 1, 0, 4, 1e-3), config, make_accelerator("no"), SILENT)
        weights[ema] = state_hash(parts.controlnet)
    assert weights[0.0] != weights[0.9]
    with pytest.raises(UsageError, match="--ema-decay must be in"):
        TrainConfig(ema_decay=1.0)


def test_min_snr_weights_cap_the_low_noise_steps_only():
    # alphas_cumprod 1/2 -> SNR 1, 0.9 -> SNR 9, 0.99 -> SNR 99, 0 -> SNR 0 (zero terminal SNR)
    alphas = torch.tensor([0.5, 0.9, 0.99, 0.0], dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3])
    epsilon = min_snr_weights(alphas, t, 5.0, v_prediction=False)
    assert epsilon.tolist() == pytest.approx([1.0, 5 / 9, 5 / 99, 0.0])
    # v: SNR + 1 in SNR's place; pure noise keeps weight 1 (the step that sets the layout from the mask)
    v = min_snr_weights(alphas, t, 5.0, v_prediction=True)
    assert v.tolist() == pytest.approx([1.0, 5 / 10, 5 / 100, 1.0])
    assert v.dtype == torch.float32


def test_min_snr_weighting_changes_training_and_is_checked():
    data = blob_set()
    weights = {}
    for gamma in (0.0, 5.0):
        config = tiny_config(base_steps=3, steps=0, base_lr=1e-3, snr_gamma=gamma)
        parts = load_parts(config, data.prompts)
        run_stage(parts, data, TrainingStage("base", 0, 0, 3, 1e-3), config, make_accelerator("no"), SILENT)
        weights[gamma] = state_hash(parts.unet)
    assert weights[0.0] != weights[5.0]
    assert "snr_gamma" in tiny_config(snr_gamma=5.0).identity()
    for bad in (-1.0, float("nan")):
        with pytest.raises(UsageError, match="--snr-gamma must be 0"):
            TrainConfig(snr_gamma=bad)


def test_halved_pairs_average_the_image_and_keep_the_mask_binary():
    images = torch.zeros((1, 3, 4, 4), dtype=torch.uint8)
    images[0, :, :2, :2] = torch.tensor([10, 20, 30, 41], dtype=torch.uint8).view(2, 2)  # one 2 x 2 block
    masks = torch.zeros((1, 1, 4, 4), dtype=torch.uint8)
    masks[0, 0, :2, :2] = torch.tensor([[1, 1], [0, 0]])  # half of a block: set
    masks[0, 0, 2:, 2:] = torch.tensor([[1, 0], [0, 0]])  # a quarter: not set
    half = tensor_training_set(images, masks, ["a"]).halved()
    assert half.resolution == 2 and half.images.dtype == torch.uint8
    assert half.images[0, 0].tolist() == [[25, 0], [0, 0]]  # (10 + 20 + 30 + 41) / 4 = 25.25
    assert half.masks[0, 0].tolist() == [[1, 0], [0, 0]]
    check_binary_control(half.control([0]))


def test_low_res_fraction_trains_the_first_steps_at_half_size():
    config = tiny_config(base_steps=4, steps=2, low_res_fraction=0.5)
    data = blob_set()
    parts = load_parts(config, data.prompts)
    sizes = []
    forward = parts.unet.forward
    parts.unet.forward = lambda sample, *a, **k: (sizes.append(sample.shape[-1]), forward(sample, *a, **k))[1]
    run_stage(parts, data, TrainingStage("base", 0, 0, 4, 1e-3), config, make_accelerator("no"), SILENT)
    assert sizes == [16, 16, 32, 32]  # resolution 32: 2 of 4 steps at 16 px, then full size
    with pytest.raises(UsageError, match="--low-res-fraction must be in"):
        TrainConfig(low_res_fraction=1.0)
    with pytest.raises(UsageError, match="--low-res-fraction is for the compact base"):
        TrainConfig(base="some/model", low_res_fraction=0.5)


def test_pooled_prompt_is_for_the_compact_base_and_part_of_the_recipe():
    from lesionaug.augment.model_choice import TrainingBudget

    with pytest.raises(UsageError, match="--pooled-prompt is for the compact base"):
        TrainConfig(base="some/model", pooled_prompt=True)
    assert TrainConfig(pooled_prompt=True).resolved().identity()["pooled_prompt"] is True
    assert TrainConfig().resolved().identity()["pooled_prompt"] is False  # the default model is unchanged
    assert TrainingBudget("small", None, "cpu").config().pooled_prompt is False


def test_a_size_that_halves_off_the_unets_grid_is_refused_with_the_fix():
    from lesionaug.train.config import check_resolution

    check_resolution(64, 8, "compact", 0.75)
    with pytest.raises(ConfigError, match="resolution 72 halved for --low-res-fraction") as refused:
        check_resolution(72, 8, "compact", 0.75)
    assert refused.value.fix == "pass --size 64 or 80"
    check_resolution(72, 8, "compact")  # at full size alone, 72 is fine


def test_masks_reach_the_controlnet_as_zeros_and_ones_only():
    config = tiny_config(base_steps=0, steps=2)
    data = blob_set()
    parts = load_parts(config, data.prompts)
    seen = []
    stage = TrainingStage("controlnet", 1, 0, 2, 1e-3)
    from lesionaug.train.loop import stage_networks

    stage_networks(parts, stage)
    original = parts.controlnet.forward

    def spy(*args, controlnet_cond=None, **kwargs):
        seen.append(torch.unique(controlnet_cond))
        return original(*args, controlnet_cond=controlnet_cond, **kwargs)

    parts.controlnet.forward = spy
    run_stage(parts, data, stage, config, make_accelerator("no"), SILENT)
    assert seen and all(set(v.tolist()) <= {0.0, 1.0} for v in seen)
    assert any(set(v.tolist()) == {0.0, 1.0} for v in seen)


def test_resize_and_crop_keeps_mask_binary_and_aligned():
    rng = np.random.default_rng(1)
    mask = np.zeros((90, 150), bool)
    mask[20:70, 40:120] = True
    mask[rng.integers(0, 90, 200), rng.integers(0, 150, 200)] = True  # ragged edges
    image = np.where(mask[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    out_image, out_mask = resize_and_crop(image, mask, 48)
    assert out_image.shape == (48, 48, 3) and out_mask.shape == (48, 48) and out_mask.dtype == bool
    # the image was the mask: after resizing both together they still agree away from edges
    agree = (out_image[..., 0] > 127) == out_mask
    assert agree.mean() > 0.9


def test_interpolated_control_is_refused():
    with pytest.raises(DatasetError, match="nearest"):
        check_binary_control(torch.tensor([0.0, 0.5, 1.0]))


def test_batches_cover_each_epoch_once_and_do_not_depend_on_the_step_taken_before():
    n, batch = 10, 3
    epoch0 = [i for m in range(3) for i in batch_indices(n, batch, 1, 0, 0, 0, m)]
    assert len(set(epoch0)) == 9  # 3 full batches of distinct samples, the last partial one dropped
    assert batch_indices(n, batch, 1, 0, 0, 0, 4) == batch_indices(n, batch, 1, 0, 0, 0, 4)
    two_ranks = batch_indices(n, 2, 2, 0, 0, 0, 0) + batch_indices(n, 2, 2, 1, 0, 0, 0)
    assert len(set(two_ranks)) == 4


def test_sd_base_trains_a_controlnet_and_the_folder_reloads(tmp_path):
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDPMScheduler,
        UNet2DConditionModel,
    )
    from transformers import AutoTokenizer, CLIPTextModel

    base = write_tiny_sd(tmp_path / "tiny-sd")
    config = TrainConfig(base=str(base), resolution=32, steps=2, batch_size=2, sample_steps=2, num_samples=2).resolved()
    data = blob_set()
    parts = load_parts(config, data.prompts)
    locked = {name: state_hash(getattr(parts, name)) for name in ("unet", "vae", "text_encoder")}
    out = tmp_path / "model"
    result = run_training(parts, lambda: data, lambda: data, out, config, PROVENANCE, SILENT)
    assert result["latent"] and [s["name"] for s in result["stages"]] == ["controlnet"]
    assert {name: state_hash(getattr(parts, name)) for name in locked} == locked

    info = json.loads((out / "lesionaug.json").read_text())
    assert info["format"] == "lesionaug.model/1" and info["latent"] is True
    assert info["size_multiple"] == 32 and info["vae_scale_factor"] == 8 and info["model_size"] is None
    assert info["split_fingerprint"] == "split-fp" and info["train_ids"] == ["a", "b"]
    assert (out / "samples" / "step-2.png").is_file()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl"))
    unet = UNet2DConditionModel.from_pretrained(out / "unet", use_safetensors=True)
    controlnet = ControlNetModel.from_pretrained(out / "controlnet", use_safetensors=True)
    AutoencoderKL.from_pretrained(out / "vae", use_safetensors=True)
    CLIPTextModel.from_pretrained(out / "text_encoder", use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    scheduler = DDPMScheduler.from_pretrained(out / "scheduler")
    assert state_hash(unet) == locked["unet"]
    assert controlnet.config.conditioning_embedding_out_channels == [16, 32, 96, 256]
    assert scheduler.config.num_train_timesteps == 1000
    assert len(tokenizer("a", padding="max_length").input_ids) == tokenizer.model_max_length


def test_latent_cache_changes_speed_not_results(tmp_path):
    base = write_tiny_sd(tmp_path / "tiny-sd")
    data = blob_set()
    losses = []
    for cache in (True, False):
        config = TrainConfig(base=str(base), resolution=32, steps=3, batch_size=2, cache_latents=cache).resolved()
        parts = load_parts(config, data.prompts)
        result = run_stage(parts, data, TrainingStage("controlnet", 0, 0, 3, 1e-4), config, make_accelerator("no"), SILENT)
        losses.append(result.losses)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_compact_folder_reloads_and_records_the_run(tmp_path):
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    config = tiny_config(base_steps=2, steps=2)
    data = blob_set()
    out = tmp_path / "model"
    run_training(load_parts(config, data.prompts), lambda: data, lambda: data, out, config, PROVENANCE, SILENT)
    info = json.loads((out / "lesionaug.json").read_text())
    assert info["base"] == "compact" and info["latent"] is False and info["vae_scale_factor"] is None
    assert info["size_multiple"] == 4 and info["resolution"] == 32 and info["steps_done"] == 4
    assert info["training"]["model_size"] == "tiny" == info["model_size"]
    assert not (out / "vae").exists()
    unet = UNet2DConditionModel.from_pretrained(out / "unet", use_safetensors=True)
    controlnet = ControlNetModel.from_pretrained(out / "controlnet", use_safetensors=True)
    text_encoder = CLIPTextModel.from_pretrained(out / "text_encoder", use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    assert unet.config.in_channels == 3 and controlnet.config.conditioning_embedding_out_channels == [16]
    ids = tokenizer([PROMPTS[0]], padding="max_length", return_tensors="pt").input_ids
    assert ids.shape[1] == tokenizer.model_max_length
    assert text_encoder(ids)[0].shape[-1] == unet.config.cross_attention_dim
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-2.png", "step-4.png"]
    schedule = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert schedule["prediction_type"] == "v_prediction" == info["training"]["prediction_type"]
    assert schedule["rescale_betas_zero_snr"] is True and schedule["timestep_spacing"] == "trailing"


def test_compact_defaults_and_schedule_options_are_checked():
    small = TrainConfig().resolved()
    assert (small.resolution, small.base_steps, small.steps, small.lr_warmup) == (128, 600, 500, 20)
    assert small.low_res_fraction == 0.75 and TrainConfig(low_res_fraction=0.0).resolved().low_res_fraction == 0.0
    assert TrainConfig(model_size="tiny").resolved().low_res_fraction == 0.0
    assert TrainConfig(base="some/model").resolved().low_res_fraction == 0.0
    assert small.patch_size == 1 and TrainConfig(patch_size=2).resolved().patch_size == 2
    assert small.prediction_type == "v_prediction" and small.zero_terminal_snr is True
    epsilon = TrainConfig(prediction_type="epsilon").resolved()
    assert epsilon.zero_terminal_snr is False  # pure noise at the last step leaves no noise to predict
    assert TrainConfig(base="some/model").resolved().prediction_type is None  # the base's scheduler decides
    with pytest.raises(UsageError, match="needs v-prediction"):
        TrainConfig(prediction_type="epsilon", zero_terminal_snr=True)
    with pytest.raises(UsageError, match="compact base only"):
        TrainConfig(base="some/model", prediction_type="epsilon")
    with pytest.raises(UsageError, match="unknown prediction type"):
        TrainConfig(prediction_type="sample")
    with pytest.raises(UsageError, match="--patch-size must be a power of two"):
        TrainConfig(patch_size=3)
    with pytest.raises(UsageError, match="--patch-size is for the compact base"):
        TrainConfig(base="some/model", patch_size=2)


def test_patches_are_a_permutation_of_the_pixels():
    from lesionaug.train.networks import from_patches, patch_size_of, to_patches

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    cut = to_patches(x, 2)
    assert cut.shape == (2, 12, 4, 4)
    assert torch.equal(torch.sort(cut.flatten()).values, torch.sort(x.flatten()).values)
    assert torch.equal(cut[0, :4, 0, 0], x[0, 0, :2, :2].flatten())  # channel 0's top-left 2 x 2 block
    assert torch.equal(from_patches(cut, 2), x) and to_patches(x, 1) is x
    assert [patch_size_of(c) for c in (3, 12, 48)] == [1, 2, 4]
    with pytest.raises(ModelError, match="3 x p x p channels"):
        patch_size_of(4)


def test_a_patch_model_trains_at_full_size_on_a_grid_half_as_wide(tmp_path):
    """--patch-size 2: 32 px pairs, a UNet on a 16 x 16 grid of 12 channels, a ControlNet whose
    conditioning embedding halves the mask; the loss falls and the folder says so."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    config = tiny_config(patch_size=2, base_steps=60, steps=2, prompt_dropout=0.0, base_lr=3e-3)
    data = blob_set(n=2)
    parts = load_parts(config, data.prompts)
    assert parts.unet.config.in_channels == 12 and parts.unet.config.sample_size == 16
    assert (parts.patch_size, parts.sample_channels, parts.size_multiple) == (2, 3, 8)
    stage = TrainingStage("base", 0, 0, 60, 3e-3)

    before = held_out_loss(parts, data, stage, config)
    run_stage(parts, data, stage, config, make_accelerator("no"), SILENT)
    assert held_out_loss(parts, data, stage, config) < 0.6 * before

    out = tmp_path / "model"
    fresh = load_parts(config, data.prompts)
    run_training(fresh, lambda: data, lambda: data, out, config, PROVENANCE, SILENT)
    info = json.loads((out / "lesionaug.json").read_text())
    assert (info["patch_size"], info["size_multiple"], info["resolution"]) == (2, 8, 32)
    assert info["training"]["patch_size"] == 2
    controlnet = ControlNetModel.from_pretrained(out / "controlnet", use_safetensors=True)
    assert controlnet.config.conditioning_embedding_out_channels == [16, 32]
    assert UNet2DConditionModel.from_pretrained(out / "unet", use_safetensors=True).config.in_channels == 12
    from PIL import Image

    grid = Image.open(out / "samples" / "step-62.png")
    assert grid.size == (2 * 32 + 2, 2 * 32 + 2)  # two 32 px samples under their masks


def test_a_different_run_in_the_folder_is_refused_and_left_alone(tmp_path):
    config = tiny_config(base_steps=1, steps=1)
    data = blob_set()
    out = tmp_path / "model"
    run_training(load_parts(config, data.prompts), lambda: data, lambda: data, out, config, PROVENANCE, SILENT)
    before = (out / "lesionaug.json").read_bytes()
    other = tiny_config(base_steps=1, steps=1, seed=7)
    for kw in ({}, {"resume": True}):
        with pytest.raises(ConfigError, match="different training run"):
            run_training(load_parts(other, data.prompts), lambda: data, lambda: data, out, other, PROVENANCE, SILENT, **kw)
    with pytest.raises(ConfigError, match="already holds this training run") as info:
        run_training(load_parts(config, data.prompts), lambda: data, lambda: data, out, config, PROVENANCE, SILENT)
    assert "--resume" in info.value.one_line() and "--force" in info.value.one_line()
    assert (out / "lesionaug.json").read_bytes() == before


def test_bf16_mixed_precision_runs_on_cpu_and_the_precision_can_change_between_runs():
    data = blob_set()
    for precision in ("bf16", "no"):
        config = tiny_config(base_steps=0, steps=1, mixed_precision=precision)
        parts = load_parts(config, data.prompts)
        accelerator = make_accelerator(precision)
        assert accelerator.mixed_precision == precision
        result = run_stage(parts, data, TrainingStage("controlnet", 1, 0, 1, 1e-3), config, accelerator, SILENT)
        assert np.isfinite(result.losses).all()


def test_resume_with_fewer_steps_than_done_is_refused_and_the_model_kept(tmp_path):
    config = tiny_config(base_steps=1, steps=2)
    data = blob_set()
    out = tmp_path / "model"
    run_training(load_parts(config, data.prompts), lambda: data, lambda: data, out, config, PROVENANCE, SILENT)
    before = (out / "lesionaug.json").read_bytes()
    shorter = tiny_config(base_steps=1, steps=1)
    with pytest.raises(ConfigError, match="already at step 3"):
        run_training(
            load_parts(shorter, data.prompts), lambda: data, lambda: data, out, shorter, PROVENANCE, SILENT, resume=True
        )
    assert (out / "lesionaug.json").read_bytes() == before
