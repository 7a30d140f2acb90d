"""The compact model's noise schedule (v-prediction, zero terminal SNR, trailing timesteps) reaches
generation through the model folder's scheduler config, and the sampler's loop over it still equals
diffusers' own StableDiffusionControlNetPipeline for every scheduler lesionaug offers.

The engine here runs the torch networks directly (the ONNX graphs do not depend on the schedule;
tests/test_parity.py checks them against the pipeline), so this test needs no export.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")

from lesionaug.train.networks import (
    build_compact_model,
    build_controlnet,
    compact_scheduler,
)

PROMPT = "a dermoscopic image of melanoma with pigment network"
STEPS = 5


class TorchEngine:
    """What the sampler calls on an engine, answered by the torch networks of a compact model."""

    def __init__(self, parts, scheduler_config: dict):
        self.parts = parts
        self.scheduler_config = scheduler_config
        self.device = "cpu"
        self.card = SimpleNamespace(channels=3, scale=1, max_batch=16)

    def check_size(self, height: int, width: int) -> None:
        pass

    def encode_prompts(self, prompts):
        ids = self.parts.tokenizer(
            prompts, padding="max_length", max_length=self.parts.max_length, truncation=True, return_tensors="pt"
        ).input_ids
        with torch.no_grad():
            return self.parts.text_encoder(ids)[0]

    def denoise(self, sample, timestep, states, control, scale):
        with torch.no_grad():
            down, mid = self.parts.controlnet(
                sample, timestep, states, controlnet_cond=control, conditioning_scale=float(scale), return_dict=False
            )
            return self.parts.unet(
                sample, timestep, states, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample

    def decode(self, sample):
        return sample


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    """A tiny compact model whose ControlNet outputs are not zero, and the scheduler config its folder holds."""
    torch.manual_seed(0)
    parts = build_compact_model("tiny", 32, [PROMPT])
    parts.controlnet = build_controlnet(parts)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for conv in [*parts.controlnet.controlnet_down_blocks, parts.controlnet.controlnet_mid_block,
                     parts.controlnet.controlnet_cond_embedding.conv_out]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.05)
    for network in (parts.unet, parts.text_encoder, parts.controlnet):
        network.eval()
    folder = tmp_path_factory.mktemp("scheduler")
    parts.noise_scheduler.save_pretrained(folder)
    config = json.loads((folder / "scheduler_config.json").read_text())
    return parts, config


def test_the_saved_schedule_is_v_prediction_with_zero_terminal_snr(compact):
    _, config = compact
    assert config["prediction_type"] == "v_prediction"
    assert config["rescale_betas_zero_snr"] is True
    assert config["timestep_spacing"] == "trailing"
    scheduler = compact_scheduler()
    assert float(scheduler.alphas_cumprod[-1]) == 0.0  # the last training step is pure noise


def test_epsilon_keeps_the_earlier_schedule():
    scheduler = compact_scheduler("epsilon", zero_terminal_snr=False)
    assert scheduler.config.prediction_type == "epsilon"
    assert scheduler.config.timestep_spacing == "leading"
    assert float(scheduler.alphas_cumprod[-1]) > 0.0


@pytest.mark.parametrize("name", ["ddim", "dpm++", "unipc", "euler", "euler-a"])
def test_sampler_matches_the_diffusers_pipeline_on_the_compact_schedule(compact, name):
    from diffusers import AutoencoderKL, StableDiffusionControlNetPipeline
    from PIL import Image

    from lesionaug.engine.sampler import SamplerSettings, generate_float, make_scheduler

    parts, config = compact
    engine = TorchEngine(parts, config)
    yy, xx = np.mgrid[:32, :32]
    mask = ((yy - 14) ** 2 / 81 + (xx - 17) ** 2 / 121) < 1
    scheduler = make_scheduler(name, config)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.timestep_spacing == "trailing"
    # The pipeline never calls this VAE (output_type="latent"); one block makes its scale factor 1.
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=3, norm_num_groups=8)
    pipe = StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        controlnet=parts.controlnet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        PROMPT,
        image=Image.fromarray(mask.astype(np.uint8) * 255).convert("RGB"),
        height=32,
        width=32,
        num_inference_steps=STEPS,
        guidance_scale=4.0,
        generator=torch.Generator("cpu").manual_seed(5),
        output_type="latent",
    )
    expected = (out.images * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    got = generate_float(engine, [PROMPT], [mask], [5], SamplerSettings(name, STEPS, 4.0))
    assert got.shape == expected.shape == (1, 32, 32, 3)
    assert got.std() > 0.01
    assert np.abs(got - expected).max() < 1e-4
