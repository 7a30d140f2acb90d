"""Tiny engines exported once per test session and shared by every test file that needs one.

Export with the dynamo exporter takes about a minute per fused graph on a small CPU, so each kind
of engine is built once, in a temporary folder removed at exit, with the lesionaug cache pointed at
that folder too (so the user's real cache is never touched).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tiny_models import write_tiny_latent_model, write_tiny_patch_model, write_tiny_pixel_model


@dataclass(frozen=True)
class Exported:
    model_dir: Path
    engine_dir: Path
    cache_dir: Path
    result: object


_BUILT: dict[tuple[str, str], Exported] = {}


def exported_engine(kind: str, precision: str = "fp32") -> Exported:
    """The tiny ``kind`` ("latent", "pixel" or "patch") model and its engine, exported on first use."""
    from lesionaug.export.run import export_model

    key = (kind, precision)
    if key not in _BUILT:
        root = Path(tempfile.mkdtemp(prefix=f"lesionaug-{kind}-{precision}-"))
        atexit.register(shutil.rmtree, root, True)
        writer = {"latent": write_tiny_latent_model, "pixel": write_tiny_pixel_model, "patch": write_tiny_patch_model}[kind]
        model_dir = writer(root / "model")
        cache_dir = root / "cache"
        previous = os.environ.get("LESIONAUG_CACHE")
        os.environ["LESIONAUG_CACHE"] = str(cache_dir)
        try:
            result = export_model(model_dir, root / "engine", precision=precision)
        finally:
            if previous is None:
                os.environ.pop("LESIONAUG_CACHE", None)
            else:
                os.environ["LESIONAUG_CACHE"] = previous
        _BUILT[key] = Exported(model_dir, root / "engine", cache_dir, result)
    return _BUILT[key]


def denoiser_with_external_weights(folder: Path):
    """A copy of the tiny pixel denoiser in ``folder`` with its weights in a data file beside it:
    (the graph's path, its ModelProto). Every float tensor over 16 values goes to the data file,
    GroupNorm's per-channel vectors too (ORT needs shape constants and Resize scales inline, as the
    exporter writes them)."""
    import numpy as np
    import onnx
    from onnx.external_data_helper import set_external_data, write_external_data_tensors

    model = onnx.load(str(exported_engine("pixel").engine_dir / "denoiser.onnx"))
    folder.mkdir(parents=True, exist_ok=True)
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and np.prod(tensor.dims) > 16:
            set_external_data(tensor, "denoiser.onnx.data")
    model = write_external_data_tensors(model, str(folder))
    onnx.save_model(model, str(folder / "denoiser.onnx"))
    return folder / "denoiser.onnx", model
