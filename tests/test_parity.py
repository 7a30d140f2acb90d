"""The real reference: diffusers' StableDiffusionControlNetPipeline vs lesionaug's exported engine.

Same weights (a tiny latent SD + ControlNet built from configs), scheduler, steps, guidance,
prompt, mask and noise seed; the images must agree to 1e-3 for every scheduler lesionaug offers
(measured: about 1e-6). The compact pixel model runs the same pipeline with a VAE whose factor is 1
and ``output_type="latent"``, so its final sample is the image.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import exported_engine  # noqa: E402

PROMPT = "a dermoscopic image of melanoma with pigment network"
STEPS = 6
TOLERANCE = 1e-3


def ellipse_mask(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((yy - cy) ** 2 / ry**2 + (xx - cx) ** 2 / rx**2) < 1


@pytest.fixture(scope="module")
def latent():
    from lesionaug.engine import Engine

    built = exported_engine("latent")
    return built, Engine.load(built.engine_dir, "cpu")


@pytest.fixture(scope="module")
def pixel():
    from lesionaug.engine import Engine

    built = exported_engine("pixel")
    return built, Engine.load(built.engine_dir, "cpu")


def _pipeline(model_dir, scheduler, *, pixel: bool = False, patch: int = 1):
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import AutoTokenizer, CLIPTextModel

    if pixel:  # never called: output_type="latent"; its blocks make vae_scale_factor the patch size
        levels = patch.bit_length()
        vae = AutoencoderKL(
            block_out_channels=(8,) * levels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            latent_channels=3 * patch * patch,
            norm_num_groups=8,
        )
    else:
        vae = AutoencoderKL.from_pretrained(model_dir / "vae")
    pipe = StableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=CLIPTextModel.from_pretrained(model_dir / "text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(model_dir / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(model_dir / "unet"),
        controlnet=ControlNetModel.from_pretrained(model_dir / "controlnet"),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference(pipe, mask, seed, guidance, *, pixel: bool = False, control_scale: float = 1.0,
               patch: int = 1) -> np.ndarray:
    import torch
    from PIL import Image

    from lesionaug.train.networks import from_patches, to_patches

    control = Image.fromarray(mask.astype(np.uint8) * 255).convert("RGB")
    extra = {}
    if patch > 1:  # the pipeline's noise on the patch grid: the pixel noise the engine draws, cut into patches
        noise = torch.randn((1, 3, *mask.shape), generator=torch.Generator("cpu").manual_seed(seed))
        extra["latents"] = to_patches(noise, patch)
    out = pipe(
        PROMPT,
        image=control,
        height=mask.shape[0],
        width=mask.shape[1],
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        controlnet_conditioning_scale=control_scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent" if pixel else "np",
        **extra,
    )
    if not pixel:
        return out.images
    return (from_patches(out.images, patch) * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["ddim", "dpm++", "unipc", "euler", "euler-a"])
def test_engine_matches_diffusers_pipeline(latent, scheduler):
    from lesionaug.engine.sampler import SamplerSettings, generate_float, make_scheduler

    built, engine = latent
    mask = ellipse_mask(64, 96, 30, 44, 20, 30)
    pipe = _pipeline(built.model_dir, make_scheduler(scheduler, engine.scheduler_config))
    expected = _reference(pipe, mask, seed=7, guidance=5.0)
    got = generate_float(engine, [PROMPT], [mask], [7], SamplerSettings(scheduler, STEPS, 5.0))
    assert got.shape == expected.shape == (1, 64, 96, 3)
    assert got.std() > 0.01  # a real image, not a constant
    assert np.abs(got - expected).max() < TOLERANCE


@pytest.mark.slow
def test_without_guidance_and_with_half_control_matches_pipeline(latent):
    from lesionaug.engine.sampler import SamplerSettings, generate_float, make_scheduler

    built, engine = latent
    mask = ellipse_mask(64, 64, 32, 32, 18, 24)
    pipe = _pipeline(built.model_dir, make_scheduler("unipc", engine.scheduler_config))
    expected = _reference(pipe, mask, seed=3, guidance=1.0, control_scale=0.5)
    got = generate_float(engine, [PROMPT], [mask], [3], SamplerSettings("unipc", STEPS, 1.0, control_scale=0.5))
    assert np.abs(got - expected).max() < TOLERANCE


@pytest.mark.slow
def test_pixel_model_matches_pipeline_final_sample(pixel):
    from lesionaug.engine.sampler import SamplerSettings, generate_float, make_scheduler

    built, engine = pixel
    mask = ellipse_mask(32, 32, 15, 17, 9, 11)
    pipe = _pipeline(built.model_dir, make_scheduler("dpm++", engine.scheduler_config), pixel=True)
    expected = _reference(pipe, mask, seed=11, guidance=4.0, pixel=True)
    got = generate_float(engine, [PROMPT], [mask], [11], SamplerSettings("dpm++", STEPS, 4.0))
    assert got.shape == expected.shape == (1, 32, 32, 3)
    assert np.abs(got - expected).max() < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["dpm++", "ddim"])
def test_patch_model_matches_the_pipeline_on_the_patch_grid(scheduler):
    """The 2 x 2 patch model: the engine (pixels in and out, patches inside the graph) against the
    diffusers pipeline run on the patch grid itself (a 12-channel "latent" at half the side), from
    the same noise cut into patches. Deterministic schedulers only: an ancestral one draws its fresh
    noise in the shape of what it steps, pixels here and patches there, the same numbers in another
    order."""
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate_float, make_scheduler

    built = exported_engine("patch")
    engine = Engine.load(built.engine_dir, "cpu")
    assert engine.card.raw["patch_size"] == 2 and engine.card.channels == 3 and engine.card.size_multiple == 8
    mask = ellipse_mask(32, 32, 15, 17, 9, 11)
    pipe = _pipeline(built.model_dir, make_scheduler(scheduler, engine.scheduler_config), pixel=True, patch=2)
    expected = _reference(pipe, mask, seed=11, guidance=4.0, pixel=True, patch=2)
    got = generate_float(engine, [PROMPT], [mask], [11], SamplerSettings(scheduler, STEPS, 4.0))
    assert got.shape == expected.shape == (1, 32, 32, 3)
    assert np.abs(got - expected).max() < TOLERANCE
    wide = generate_float(engine, [PROMPT], [ellipse_mask(24, 48, 12, 20, 8, 14)], [11], SamplerSettings(scheduler, 2, 4.0))
    assert wide.shape == (1, 24, 48, 3)  # any multiple of 8 px, not only the training size


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["dpm++", "euler-a"])
def test_a_batch_gives_each_job_its_own_image(latent, scheduler):
    """Batch independence: jobs run together give the bytes each job gives alone (ancestral noise included)."""
    from lesionaug.engine.sampler import SamplerSettings, generate

    _, engine = latent
    settings = SamplerSettings(scheduler, 4, 5.0)
    masks = [
        ellipse_mask(64, 64, 30, 30, 15, 20),
        ellipse_mask(64, 64, 20, 40, 10, 12),
        ellipse_mask(64, 64, 40, 25, 20, 10),
    ]
    prompts = [PROMPT, "a dermoscopic image of nevus", PROMPT]
    seeds = [5, 6, 7]
    batch = generate(engine, prompts, masks, seeds, settings)
    alone = np.concatenate([generate(engine, [p], [m], [s], settings) for p, m, s in zip(prompts, masks, seeds)])
    assert batch.dtype == np.uint8 and batch.shape == (3, 64, 64, 3)
    assert np.array_equal(batch, alone)
    # And a job's place in the batch does not matter either.
    swapped = generate(engine, prompts[::-1], masks[::-1], seeds[::-1], settings)
    assert np.array_equal(swapped[::-1], batch)


@pytest.mark.slow
def test_seed_mask_and_prompt_each_change_the_image(pixel):
    from lesionaug.engine.sampler import SamplerSettings, generate

    _, engine = pixel
    settings = SamplerSettings("ddim", 3, 3.0)
    m1, m2 = ellipse_mask(32, 32, 16, 16, 8, 8), ellipse_mask(32, 32, 10, 20, 6, 9)
    base = generate(engine, [PROMPT], [m1], [1], settings)
    assert np.array_equal(base, generate(engine, [PROMPT], [m1], [1], settings))
    assert not np.array_equal(base, generate(engine, [PROMPT], [m1], [2], settings))
    assert not np.array_equal(base, generate(engine, [PROMPT], [m2], [1], settings))
    assert not np.array_equal(base, generate(engine, ["a dermoscopic image of nevus"], [m1], [1], settings))
