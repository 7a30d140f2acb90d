"""Save and load a fitted ``ShapeModel`` as one ``.npz`` file (no pickles).

The file holds a JSON header (format, config, split fingerprint, group names, diagnoses of the
stored training masks) and plain arrays: each group's outlines, placements and principal axes,
and the training masks bit-packed for the ``real`` source.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lesionaug.atomic_files import write_bytes_atomic
from lesionaug.errors import ConfigError
from lesionaug.formats import SHAPE_MODEL_FORMAT as FORMAT
from lesionaug.masks.shape_model import (
    _SHAPE_FIELDS,
    LesionShapes,
    ShapeGroup,
    ShapeModel,
    ShapeModelConfig,
)


def save_shape_model(model: ShapeModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (temporary name in the same folder, then rename)."""
    path = Path(path)
    names = list(model.groups)
    header = {
        "format": FORMAT,
        "config": asdict(model.config),
        "fingerprint": model.fingerprint,
        "groups": names,
        "area_ranges": [list(model.groups[n].area_range) for n in names],
        "real_diagnoses": list(model.real_diagnoses),
        "skipped": model.skipped,
        "meta": model.meta,
    }
    arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(header))}
    for j, name in enumerate(names):
        group = model.groups[name]
        for f in _SHAPE_FIELDS:
            arrays[f"g{j}_{f}"] = getattr(group.lesions, f)
        arrays[f"g{j}_components"] = group.components
        arrays[f"g{j}_sigma"] = group.sigma
    shapes = np.array([m.shape for m in model.real_masks], dtype=np.int64).reshape(-1, 2)
    packed = [np.packbits(m.ravel()) for m in model.real_masks]
    arrays["real_shapes"] = shapes
    arrays["real_offsets"] = np.cumsum([0] + [p.size for p in packed]).astype(np.int64)
    arrays["real_bits"] = np.concatenate(packed) if packed else np.zeros(0, np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def load_shape_model(path: str | Path) -> ShapeModel:
    """Read a model written by ``save_shape_model``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        header = json.loads(str(arrays["header"]))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"cannot read shape model ({exc})", path=path, fix="refit it with `lesionaug masks`"
        ) from None
    if header.get("format") != FORMAT:
        raise ConfigError(
            f"not a shape model file (format {header.get('format')!r})",
            path=path,
            fix=f"expected {FORMAT}; refit it with `lesionaug masks`",
        )
    config = ShapeModelConfig(**header["config"])
    groups = {}
    for j, name in enumerate(header["groups"]):
        lesions = LesionShapes(*(arrays[f"g{j}_{f}"] for f in _SHAPE_FIELDS))
        lo, hi = header["area_ranges"][j]
        groups[name] = ShapeGroup(
            name=name,
            lesions=lesions,
            components=arrays[f"g{j}_components"],
            sigma=arrays[f"g{j}_sigma"],
            area_range=(float(lo), float(hi)),
        )
    offsets, bits = arrays["real_offsets"], arrays["real_bits"]
    real = []
    for k, (h, w) in enumerate(arrays["real_shapes"]):
        flat = np.unpackbits(bits[offsets[k] : offsets[k + 1]], count=int(h * w))
        real.append(flat.reshape(int(h), int(w)).astype(bool))
    return ShapeModel(
        config=config,
        fingerprint=header["fingerprint"],
        groups=groups,
        real_masks=tuple(real),
        real_diagnoses=tuple(header["real_diagnoses"]),
        skipped=int(header.get("skipped", 0)),
        meta=header.get("meta", {}),
    )
