"""The graphs of an engine as torch modules, and their export to ONNX with the dynamo exporter.

Three graphs: the text encoder (token ids -> last hidden state), the denoiser (UNet and ControlNet
fused, so a dozen residual tensors never leave the graph) and, for latent models, the VAE decoder.
Each module takes and returns float32 whatever precision it runs in, so the sampler never has to
know how an engine was exported.

This module imports torch at the top: only export and tests import it, never the CLI at start-up.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesionaug.errors import ModelError
from lesionaug.train.networks import predict

TEXT_ENCODER = "text_encoder"
DENOISER = "denoiser"
VAE_DECODER = "vae_decoder"

DENOISER_INPUTS = ("sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale")
MAX_BATCH = 63
MAX_SIDE = 8192  # pixels


@dataclass(frozen=True)
class Geometry:
    """The spatial facts every graph of one model shares."""

    latent: bool
    channels: int  # channels of the denoised sample (4 for SD latents, 3 for pixel models)
    scale: int  # pixels per sample cell (the VAE factor, 1 for pixel models)
    sample_multiple: int  # the UNet's multiple, in sample cells (times the patch size for pixel models)
    token_length: int
    hidden_size: int
    patch: int = 1  # pixel models: the UNet sees p x p patches as channels, inside the denoiser graph

    @property
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this many pixels."""
        return self.sample_multiple * self.scale


class _FloatNorm(nn.Module):
    """Runs a normalisation layer in float32 inside a half-precision graph (no variance overflow)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


def keep_norms_in_float32(module: nn.Module) -> nn.Module:
    """Wrap every GroupNorm/LayerNorm of ``module`` so it computes in float32 (call after ``.half()``)."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.GroupNorm, nn.LayerNorm)):
            setattr(module, name, _FloatNorm(child))
        else:
            keep_norms_in_float32(child)
    return module


class TextEncoderGraph(nn.Module):
    """input_ids (B, L) int64 -> last_hidden_state (B, L, D) float32, as the diffusers pipeline encodes."""

    def __init__(self, text_encoder: nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=False)[0].float()


class FusedDenoiser(nn.Module):
    """UNet + ControlNet in one module: the diffusers ControlNet pipeline's step, guess mode off.
    With ``patch`` > 1 the sample is cut into patches on the way in and put back on the way out
    (``train/networks.py``), so the graph's sample and output stay pixels."""

    def __init__(self, unet: nn.Module, controlnet: nn.Module, dtype: torch.dtype = torch.float32, patch: int = 1):
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet
        self.dtype = dtype
        self.patch = patch

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: torch.Tensor,
    ) -> torch.Tensor:
        noise = predict(self.unet, self.controlnet, sample.to(self.dtype), timestep, encoder_hidden_states.to(self.dtype),
                        controlnet_cond.to(self.dtype), self.patch, conditioning_scale.to(self.dtype))
        return noise.float()


class VaeDecoderGraph(nn.Module):
    """Final latents (B, 4, h, w) -> decoded image in [-1, 1] (B, 3, H, W): ``vae.decode(z / scaling)``."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.scaling_factor, return_dict=False)[0].float()


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: its module, names, dynamic shapes and a sample input builder."""

    name: str
    module: nn.Module
    input_names: tuple[str, ...]
    output_name: str
    dynamic_shapes: dict[str, Any]

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"


def _dims(geometry: Geometry) -> tuple[Any, Any, Any]:
    Dim = torch.export.Dim
    units = MAX_SIDE // geometry.size_multiple
    batch = Dim("batch", min=1, max=MAX_BATCH)
    height = Dim("height_units", min=1, max=units)
    width = Dim("width_units", min=1, max=units)
    return batch, height, width


def text_encoder_spec(text_encoder: nn.Module, geometry: Geometry) -> GraphSpec:
    batch, _, _ = _dims(geometry)
    return GraphSpec(TEXT_ENCODER, TextEncoderGraph(text_encoder).eval(), ("input_ids",), "last_hidden_state",
                     {"input_ids": {0: batch}})


def denoiser_spec(unet: nn.Module, controlnet: nn.Module, geometry: Geometry, dtype: torch.dtype) -> GraphSpec:
    batch, height, width = _dims(geometry)
    m, p = geometry.sample_multiple, geometry.size_multiple
    shapes = {
        "sample": {0: batch, 2: m * height, 3: m * width},
        "timestep": {0: batch},
        "encoder_hidden_states": {0: batch},
        "controlnet_cond": {0: batch, 2: p * height, 3: p * width},
        "conditioning_scale": None,
    }
    module = FusedDenoiser(unet, controlnet, dtype, geometry.patch).eval()
    return GraphSpec(DENOISER, module, DENOISER_INPUTS, "noise_pred", shapes)


def vae_decoder_spec(vae: nn.Module, geometry: Geometry) -> GraphSpec:
    batch, height, width = _dims(geometry)
    m = geometry.sample_multiple
    shapes = {"latents": {0: batch, 2: m * height, 3: m * width}}
    return GraphSpec(VAE_DECODER, VaeDecoderGraph(vae).eval(), ("latents",), "image", shapes)


def sample_inputs(name: str, geometry: Geometry, *, batch: int, units: tuple[int, int], seed: int,
                  vocab_size: int = 2) -> dict[str, torch.Tensor]:
    """Random float32 inputs for graph ``name`` at ``units`` multiples of the size multiple."""
    gen = torch.Generator().manual_seed(seed)
    h, w = (u * geometry.sample_multiple for u in units)
    if name == TEXT_ENCODER:
        return {"input_ids": torch.randint(0, vocab_size, (batch, geometry.token_length), generator=gen)}
    if name == VAE_DECODER:
        return {"latents": torch.randn((batch, geometry.channels, h, w), generator=gen)}
    return {
        "sample": torch.randn((batch, geometry.channels, h, w), generator=gen),
        "timestep": torch.full((batch,), 501.0),
        "encoder_hidden_states": torch.randn((batch, geometry.token_length, geometry.hidden_size), generator=gen),
        "controlnet_cond": (torch.rand((batch, 3, h * geometry.scale, w * geometry.scale), generator=gen) > 0.5).float(),
        "conditioning_scale": torch.tensor([1.0]),
    }


EXTERNAL_DATA_SUFFIX = ".data"  # the exporter writes a graph's external weights to <graph file>.data


def export_graph(spec: GraphSpec, example: dict[str, torch.Tensor], path: Path, opset: int,
                 external_data: bool | None = None) -> list[Path]:
    """Export ``spec`` to ``path`` with the dynamo exporter; return the files written.

    The graph is captured with ``torch.export`` first, so dynamic sizes the model cannot take (a side
    that is not a multiple of what the UNet needs) fail here with a clear message instead of being
    silently specialised. Weights go to ``<file>.data`` beside the graph (ONNX external data) when
    ``external_data``, or, when it is None, when they pass the exporter's threshold (1.5 GB): a
    protobuf file cannot hold more than 2 GB, and a Stable Diffusion 1.5 denoiser is 2.4 GB in fp16.
    """
    # The exporter logs every torchvision op it cannot register; nothing here uses torchvision.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    args = tuple(example[n] for n in spec.input_names)
    shapes = tuple(spec.dynamic_shapes[n] for n in spec.input_names)
    with torch.no_grad():
        try:
            program = torch.export.export(spec.module, args, dynamic_shapes=shapes, strict=False)
        except torch._dynamo.exc.UserError as exc:  # constraint violations on the declared sizes
            first = str(exc).strip().splitlines()[0]
            raise ModelError(
                f"{spec.name} cannot be exported for every declared size ({first})",
                path=path.parent,
                fix="image sides must be a multiple of what the UNet downsamples by; "
                "fix size_multiple in the model's lesionaug.json",
            ) from None
        with warnings.catch_warnings():  # axis renaming warns about derived dims sharing a root
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program,
                f=None,
                dynamo=True,
                verbose=False,
                input_names=list(spec.input_names),
                output_names=[spec.output_name],
                dynamic_shapes=shapes,  # names the symbolic axes "batch", "4*height_units", ...
                opset_version=opset,
                optimize=True,
                verify=False,
            )
    onnx_program.save(path, external_data=external_data)
    files = [path]
    data = path.with_name(path.name + EXTERNAL_DATA_SUFFIX)
    if data.exists():
        files.append(data)
    return files


def run_reference(spec: GraphSpec, inputs: dict[str, torch.Tensor]) -> Any:
    """The PyTorch output of ``spec`` on ``inputs`` (float32 numpy)."""
    with torch.no_grad():
        out = spec.module(*(inputs[n] for n in spec.input_names))
    return out.float().numpy()
