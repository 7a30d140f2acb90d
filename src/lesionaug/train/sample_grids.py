"""Validation grids during training: masks on the top row, images generated from them below.

A few DDIM steps with classifier-free guidance, noise drawn on the CPU from a fixed seed, so the
grids of successive checkpoints differ only by what the networks learned. The ControlNet starts to
follow the mask suddenly; the grids are how a user sees when.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lesionaug.atomic_files import write_bytes_atomic
from lesionaug.train.loop import encode_texts
from lesionaug.train.networks import ModelParts, predict


def generate_images(
    parts: ModelParts,
    control: Any,
    prompts: list[str],
    *,
    steps: int,
    guidance: float,
    seed: int,
    use_controlnet: bool = True,
) -> np.ndarray:
    """Generate one image per control image (N, 3, H, W in {0, 1}); uint8 (N, H, W, 3)."""
    import torch
    from diffusers import DDIMScheduler

    device = next(parts.unet.parameters()).device
    scheduler = DDIMScheduler.from_config(parts.noise_scheduler.config)
    scheduler.set_timesteps(steps)
    n, _, height, width = control.shape
    factor, patch = parts.vae_scale_factor or 1, parts.patch_size
    shape = (n, parts.sample_channels, height // factor, width // factor)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device) * scheduler.init_noise_sigma
    with torch.no_grad():
        text = encode_texts(parts, [""] * n + list(prompts), device)
        control2 = torch.cat([control, control]).to(device)
        controlnet = parts.controlnet if use_controlnet else None
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
            uncond, cond = predict(parts.unet, controlnet, model_in, t, text, control2, patch).chunk(2)
            x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
        if parts.latent:
            cfg = parts.vae.config
            x = parts.vae.decode(x / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)).sample
    pixels = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def grid_png(masks: np.ndarray, images: np.ndarray, gap: int = 2) -> bytes:
    """PNG bytes of a 2-row grid: masks (N, H, W) in {0, 1} above images (N, H, W, 3)."""
    import io

    from PIL import Image

    n, h, w = masks.shape
    canvas = np.full((2 * h + gap, n * w + (n - 1) * gap, 3), 255, dtype=np.uint8)
    for i in range(n):
        x = i * (w + gap)
        canvas[:h, x : x + w] = (masks[i] * 255).astype(np.uint8)[..., None]
        canvas[h + gap :, x : x + w] = images[i]
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


def write_sample_grid(
    path: Path, parts: ModelParts, control: Any, prompts: list[str], *, steps: int, guidance: float, seed: int
) -> Path:
    """Generate from ``control`` (with the ControlNet when there is one) and write the grid PNG."""
    images = generate_images(
        parts, control, prompts, steps=steps, guidance=guidance, seed=seed, use_controlnet=parts.controlnet is not None
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, grid_png(control[:, 0].cpu().numpy(), images), durable=False)
    return path
