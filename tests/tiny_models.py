"""Tiny lesionaug model folders built from configs, for export, engine and parity tests.

``write_tiny_latent_model`` is the training engineer's tiny Stable Diffusion (``tiny_sd.py``) plus a
ControlNet made with ``ControlNetModel.from_unet``; ``write_tiny_pixel_model`` is a compact
pixel-space model (3-channel UNet, a ControlNet whose conditioning embedding does not downsample,
no VAE). Both write ``lesionaug.json`` as ``lesionaug train`` does.

A fresh ControlNet's zero convolutions are exactly zero, so it would change nothing and a test could
not tell whether the control image reaches the graph: they get small random weights here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tiny_sd import TINY_SD_SIZE_MULTIPLE, write_tiny_sd

TINY_PIXEL_SIZE_MULTIPLE = 4  # two downsamplings in pixel space


def _randomise_zero_convs(controlnet, seed: int, std: float = 0.05) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    zero_convs.append(controlnet.controlnet_cond_embedding.conv_out)
    with torch.no_grad():
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * std)


def _write_card(path: Path, *, base: str, latent: bool, resolution: int, size_multiple: int, vae_scale) -> None:
    card = {
        "format": "lesionaug.model/1",
        "base": base,
        "latent": latent,
        "resolution": resolution,
        "size_multiple": size_multiple,
        "vae_scale_factor": vae_scale,
        "prompt_template": "a dermoscopic image of {diagnosis} {attributes} {site}",
        "label_vocabulary": {"diagnosis": ["mel", "nv"], "attributes": ["pigment_network"]},
        "split_fingerprint": "0" * 16,
        "train_ids": ["ISIC_0000000", "ISIC_0000001"],
        "tool_version": "0.1.0",
    }
    (path / "lesionaug.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def write_tiny_latent_model(path: str | Path, seed: int = 0) -> Path:
    """A tiny latent SD + ControlNet model folder (images a multiple of 32 px)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    path = write_tiny_sd(path)
    (path / "model_index.json").unlink(missing_ok=True)
    unet = UNet2DConditionModel.from_pretrained(path / "unet")
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    _randomise_zero_convs(controlnet, seed)
    controlnet.save_pretrained(path / "controlnet", safe_serialization=True)
    _write_card(path, base="tiny-sd", latent=True, resolution=64, size_multiple=TINY_SD_SIZE_MULTIPLE, vae_scale=8)
    return path


def write_tiny_pixel_model(path: str | Path, seed: int = 0, patch: int = 1) -> Path:
    """A tiny compact pixel-space model folder (3-channel UNet, no VAE; images a multiple of 4 px);
    ``patch`` 2: the UNet takes 2 x 2 pixel patches (12 channels; images a multiple of 8 px)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    path = write_tiny_sd(path)
    (path / "model_index.json").unlink(missing_ok=True)
    shutil.rmtree(path / "vae")
    shutil.rmtree(path / "unet")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32 // patch,
        in_channels=3 * patch * patch,
        out_channels=3 * patch * patch,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    unet.save_pretrained(path / "unet", safe_serialization=True)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)[: patch.bit_length()])
    _randomise_zero_convs(controlnet, seed + 1)
    controlnet.save_pretrained(path / "controlnet", safe_serialization=True)
    _write_card(path, base="compact", latent=False, resolution=32, size_multiple=TINY_PIXEL_SIZE_MULTIPLE * patch,
                vae_scale=None)
    return path


def write_tiny_patch_model(path: str | Path, seed: int = 0) -> Path:
    return write_tiny_pixel_model(path, seed, patch=2)
