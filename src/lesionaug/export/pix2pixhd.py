"""A Pix2PixHD model folder -> an engine folder with one graph, ``generator.onnx`` (label map -> image).

    ENGINE_DIR/generator.onnx    label_map (B, C, H, W) float32 -> image (B, 3, H, W) in [-1, 1]
    ENGINE_DIR/lesionaug.json    lesionaug.engine/1, generator "pix2pixhd", the model card inside

One forward pass, no scheduler, no text encoder: the label map's channels (``plan/label_channels.py``)
carry the mask, diagnosis and attributes. Batch and sides are dynamic (sides a multiple of the
generator's ``size_multiple``). The graph is verified against PyTorch on a random label map before
the engine is moved into place, with the tolerance of the diffusion graphs. The graph is always
fp32: it is small, and instance normalisation over half-precision activations drifts on the CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesionaug import __version__
from lesionaug.engine.session import verification_session
from lesionaug.errors import ModelError
from lesionaug.export.graphs import MAX_BATCH, MAX_SIDE, GraphSpec, export_graph
from lesionaug.formats import ENGINE_FORMAT
from lesionaug.plan.label_channels import LABEL_CHANNELS, label_channel_names
from lesionaug.train.pix2pixhd_config import GENERATOR_DIR, GENERATOR_KIND, WEIGHTS_NAME, Pix2PixHDSize
from lesionaug.train.pix2pixhd_networks import build_generator

GRAPH = "generator"
INPUT, OUTPUT = "label_map", "image"
TOLERANCE = 1e-3  # max |ORT - PyTorch| relative to max(1, max |PyTorch|), as for the fp32 diffusion graphs
VERIFY_BATCH, VERIFY_SEED = 2, 1234


def is_pix2pixhd_card(card: dict) -> bool:
    return card.get("generator") == GENERATOR_KIND


def load_generator(model_dir: Path, card: dict) -> tuple[Any, int]:
    """The trained generator of a Pix2PixHD model folder (eval mode) and its size multiple."""
    from safetensors.torch import load_file

    size = Pix2PixHDSize.from_dict(card.get("network") or {})
    resolution = int(card["resolution"])
    if card.get("label_channels") != label_channel_names():
        raise ModelError("the model's label channels differ from this version's vocabulary", path=model_dir,
                         fix="retrain the model with this version of lesionaug")
    weights = Path(model_dir) / GENERATOR_DIR / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError("the Pix2PixHD model folder has no generator weights", path=weights,
                         fix="pass a complete model folder written by `lesionaug train --generator pix2pixhd`")
    generator = build_generator(size, resolution)
    try:
        generator.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"generator weights do not fit the card's network ({str(exc).splitlines()[0]})",
                         path=weights, fix="retrain the model") from None
    return generator.eval(), size.size_multiple(resolution)


def example_label_map(batch: int, side: int, seed: int) -> torch.Tensor:
    """A random label map: a 0/1 mask channel and 0/1 label channels."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((batch, LABEL_CHANNELS, side, side), generator=generator) > 0.5).float()


def verify_generator(generator: Any, path: Path, side: int) -> dict:
    """Run ``generator.onnx`` and PyTorch on one random label map; ModelError past the tolerance."""
    x = example_label_map(VERIFY_BATCH, side, VERIFY_SEED)
    with torch.no_grad():
        expected = generator(x).numpy()
    session, provider = verification_session(path, "fp32")
    got = session.run(None, {INPUT: x.numpy()})[0]
    scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(got.astype(np.float64) - expected).max()) if np.isfinite(got).all() else float("inf")
    tolerance = TOLERANCE * scale
    if diff > tolerance:
        raise ModelError(f"verification failed: generator.onnx differs from PyTorch by {diff:.3g} "
                         f"(tolerance {tolerance:.3g})", path=path, fix="try another --opset; no engine was written")
    return {"max_abs_diff": diff, "tolerance": tolerance, "provider": provider, "finite": True,
            "input_shapes": {INPUT: list(x.shape)}}


def export_pix2pixhd(model_dir: Path, model_card: dict, tmp: Path, *, opset: int, verify: bool,
                     external_data: bool | None, sha256, graph_io) -> dict:
    """Export and verify ``generator.onnx`` into ``tmp``; return the engine card (written by the caller)."""
    generator, multiple = load_generator(model_dir, model_card)
    dim = torch.export.Dim
    height = dim("height_units", min=1, max=MAX_SIDE // multiple)
    width = dim("width_units", min=1, max=MAX_SIDE // multiple)
    spec = GraphSpec(GRAPH, generator, (INPUT,), OUTPUT,
                     {INPUT: {0: dim("batch", min=1, max=MAX_BATCH), 2: multiple * height, 3: multiple * width}})
    path = tmp / spec.filename
    files = export_graph(spec, {INPUT: example_label_map(2, 2 * multiple, 0)}, path, opset, external_data)
    side = min(int(model_card["resolution"]), 256)  # verified at the training side (capped: a CPU check)
    entry: dict[str, Any] = {"file": spec.filename, "sha256": sha256(path), "files": {f.name: sha256(f) for f in files},
                             "precision": "fp32", **graph_io(path)}
    if verify:
        entry["verification"] = verify_generator(generator, path, side)
    return {
        "format": ENGINE_FORMAT,
        "generator": GENERATOR_KIND,
        "model": model_card,
        "model_dir": str(Path(model_dir).resolve()),
        "precision": "fp32",
        "opset": opset,
        "verified": verify,
        "latent": False,
        "channels": LABEL_CHANNELS,
        "label_channels": label_channel_names(),
        "scale": 1,
        "size_multiple": multiple,
        "sample_multiple": multiple,
        "token_length": 0,
        "hidden_size": 0,
        "max_batch": MAX_BATCH,
        "noise_input": False,
        "graphs": {GRAPH: entry},
        "exporter": {"name": "torch.onnx.export(dynamo=True)", "torch": torch.__version__},
        "lesionaug_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
