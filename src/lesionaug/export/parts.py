"""The PyTorch side of export: load a model folder's parts, check they fit together, build graph specs.

Imports torch and diffusers at the top; only ``export.export_model`` imports this module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesionaug.errors import ModelError, first_line
from lesionaug.export import graphs as g
from lesionaug.safe_weights import use_safetensors
from lesionaug.train.networks import patch_size_of


@dataclass
class ExportParts:
    """The loaded PyTorch modules of one model folder and the geometry they share."""

    text_encoder: nn.Module
    unet: nn.Module
    controlnet: nn.Module
    vae: nn.Module | None
    geometry: g.Geometry
    vocab_size: int
    max_batch: int = g.MAX_BATCH

    def graph_precision(self, name: str, precision: str) -> str:
        """The VAE decoder stays fp32 in fp16 engines: it is where half precision turns images black."""
        return "fp32" if name == g.VAE_DECODER else precision


def _load(kind: str, loader, folder: Path) -> Any:
    try:
        return loader(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot load {kind} ({first_line(exc)})", path=folder,
                         fix="the model folder must hold diffusers/transformers save_pretrained output") from None


def load_export_parts(model_dir: Path, card: dict[str, Any], allow_pickle: bool = False) -> ExportParts:
    """Load the text encoder, UNet, ControlNet (and VAE) and derive their shared geometry.

    Weights are read from safetensors only (no silent fallback to pickles) unless ``allow_pickle``.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # progress is ours to report

    def pretrained(cls):
        return lambda folder: cls.from_pretrained(folder, local_files_only=True,
                                                  use_safetensors=use_safetensors(allow_pickle)).eval()

    unet = _load("the UNet", pretrained(UNet2DConditionModel), model_dir / "unet")
    controlnet = _load("the ControlNet", pretrained(ControlNetModel), model_dir / "controlnet")
    text_encoder = _load("the text encoder", pretrained(CLIPTextModel), model_dir / "text_encoder")
    tokenizer = _load("the tokenizer", lambda f: AutoTokenizer.from_pretrained(f, local_files_only=True),
                      model_dir / "tokenizer")
    vae = _load("the VAE", pretrained(AutoencoderKL), model_dir / "vae") if card["latent"] else None
    for module in (unet, controlnet, text_encoder, vae):
        if module is not None:
            module.requires_grad_(False)

    geometry = derive_geometry(model_dir, card, unet, controlnet, text_encoder, tokenizer, vae)
    return ExportParts(text_encoder, unet, controlnet, vae, geometry, int(text_encoder.config.vocab_size))


def derive_geometry(model_dir: Path, card: dict, unet, controlnet, text_encoder, tokenizer, vae) -> g.Geometry:
    """Channels, scale and size multiple from the configs, cross-checked against the model card."""
    latent = bool(card["latent"])
    channels = int(unet.config.in_channels)
    if int(unet.config.out_channels) != channels:
        raise ModelError("UNet in_channels and out_channels differ", path=model_dir / "unet",
                         fix="a denoising UNet predicts noise of its input's shape")
    scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
    if vae is not None and int(vae.config.latent_channels) != channels:
        raise ModelError(f"VAE latents have {vae.config.latent_channels} channels, the UNet takes {channels}",
                         path=model_dir, fix="the UNet and VAE must come from the same base")
    patch = 1
    if not latent:
        try:
            patch = patch_size_of(channels)
        except ModelError as exc:
            raise ModelError(f"pixel model: {exc.message}", path=model_dir / "unet", fix=exc.fix) from None
        if card.get("patch_size") not in (None, patch):
            raise ModelError(f"model card patch_size {card['patch_size']} != the UNet's {patch} ({channels} channels)",
                             path=model_dir / "lesionaug.json", fix=f"set patch_size to {patch}")
        channels = 3
    cond_levels = len(controlnet.config.conditioning_embedding_out_channels or (16, 32, 96, 256))
    cond_scale = 2 ** (cond_levels - 1)
    if cond_scale != scale * patch:
        raise ModelError(
            f"the ControlNet's conditioning embedding downsamples by {cond_scale} but the UNet's grid has "
            f"{scale * patch} pixels per cell", path=model_dir / "controlnet",
            fix="retrain the ControlNet with a conditioning embedding that matches the VAE factor or patch size")
    hidden = int(text_encoder.config.hidden_size)
    if int(unet.config.cross_attention_dim) != hidden:
        raise ModelError(f"UNet cross_attention_dim {unet.config.cross_attention_dim} != text hidden size {hidden}",
                         path=model_dir, fix="the UNet and text encoder must come from the same base")
    token_length = int(tokenizer.model_max_length)
    if token_length > int(text_encoder.config.max_position_embeddings):
        raise ModelError(f"tokenizer pads to {token_length} tokens, the text encoder has "
                         f"{text_encoder.config.max_position_embeddings} positions", path=model_dir / "tokenizer",
                         fix="set model_max_length in tokenizer_config.json")

    sample_multiple = 2 ** (len(unet.config.down_block_types) - 1) * patch
    needed = sample_multiple * scale
    declared = int(card.get("size_multiple") or needed)
    if declared % needed:
        raise ModelError(f"model card says image sides are a multiple of {declared} px, but the UNet needs a "
                         f"multiple of {needed} px", path=model_dir / "lesionaug.json",
                         fix=f"set size_multiple to a multiple of {needed}")
    if card.get("vae_scale_factor") not in (None, scale) and latent:
        raise ModelError(f"model card vae_scale_factor {card['vae_scale_factor']} != VAE factor {scale}",
                         path=model_dir / "lesionaug.json", fix=f"set vae_scale_factor to {scale}")
    return g.Geometry(latent=latent, channels=channels, scale=scale, sample_multiple=declared // scale,
                      token_length=token_length, hidden_size=hidden, patch=patch)


def _half(module: nn.Module) -> nn.Module:
    return g.keep_norms_in_float32(copy.deepcopy(module).half())


def graph_specs(parts: ExportParts, precision: str) -> dict[str, tuple[g.GraphSpec, g.GraphSpec]]:
    """name -> (spec to export, float32 reference spec to verify against), text encoder first."""
    geo = parts.geometry
    specs: dict[str, tuple[g.GraphSpec, g.GraphSpec]] = {}
    ref_text = g.text_encoder_spec(parts.text_encoder, geo)
    ref_denoiser = g.denoiser_spec(parts.unet, parts.controlnet, geo, torch.float32)
    if precision == "fp16":
        specs[g.TEXT_ENCODER] = (g.text_encoder_spec(_half(parts.text_encoder), geo), ref_text)
        half = g.denoiser_spec(_half(parts.unet), _half(parts.controlnet), geo, torch.float16)
        specs[g.DENOISER] = (half, ref_denoiser)
    else:
        specs[g.TEXT_ENCODER] = (ref_text, ref_text)
        specs[g.DENOISER] = (ref_denoiser, ref_denoiser)
    if parts.vae is not None:
        ref_vae = g.vae_decoder_spec(parts.vae, geo)
        specs[g.VAE_DECODER] = (ref_vae, ref_vae)
    return specs
