"""The ``real`` mask source: training masks reused with a random affine and an elastic warp.

This is the Mask2Lesion / Siamese-Diffusion practice. A lesion that the image border clips has a
straight edge there that is an artefact of the frame, so such masks only get transforms that keep
the old frame outside the new one (flips, a small rotation with enough zoom, a shift within the
slack); unclipped lesions may turn freely about their centroid, and new clipping is real clipping.
Geometry works in isotropic units (pixels over sqrt(w*h)), so an output of another aspect ratio
is a crop or an extension of the frame, never a stretch.
"""

from __future__ import annotations

import numpy as np

from lesionaug.masks.geometry import bounding_box, keep_one_component, resize_mask
from lesionaug.masks.shape_model import MIN_LESION_PIXELS, ShapeModel

ELASTIC_AMPLITUDE = 0.012  # displacement std, in units of sqrt(w * h)
ELASTIC_FREQUENCIES = 4  # cosine modes per axis: smooth, lesion-scale warps
MAX_ATTEMPTS = 8


def sample_real_mask(
    model: ShapeModel, seed: int, diagnosis: str | None = None, size: tuple[int, int] = (512, 512)
) -> np.ndarray:
    """A training mask with random affine and elastic jitter, at ``size`` (w, h); one component."""
    rng = np.random.default_rng(seed)
    pool = _pool(model, diagnosis)
    mask = None
    for _ in range(MAX_ATTEMPTS):
        source = model.real_masks[int(pool[rng.integers(pool.size)])]
        mask = keep_one_component(warp_mask(source, size, rng))
        if mask.sum() >= MIN_LESION_PIXELS:
            return mask
    # Every draw left the frame (tiny lesions near the border): fall back to the plain resize.
    return keep_one_component(resize_mask(source, size))


def _pool(model: ShapeModel, diagnosis: str | None) -> np.ndarray:
    if diagnosis and diagnosis in model.groups:
        rows = [i for i, d in enumerate(model.real_diagnoses) if d == diagnosis]
        if rows:
            return np.asarray(rows)
    return np.arange(len(model.real_masks))


def warp_mask(source: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Resample ``source`` into a (w, h) frame through a random affine plus elastic map."""
    from scipy import ndimage

    hs, ws = source.shape
    w, h = int(size[0]), int(size[1])
    unit_s, unit_o = np.sqrt(ws * hs), np.sqrt(w * h)
    clipped = bool(source[0].any() or source[-1].any() or source[:, 0].any() or source[:, -1].any())
    flip = np.diag([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0])])

    if clipped:
        linear, offset = _frame_preserving_affine(rng, (ws / unit_s, hs / unit_s), (w / unit_o, h / unit_o))
        linear = linear @ flip
        anchor_out = np.zeros(2)
    else:
        angle = rng.uniform(-np.pi, np.pi)
        scale = rng.uniform(0.9, 1.1)
        linear = _rotation(-angle) @ flip / scale
        ys, xs = np.nonzero(source)
        centroid = np.array([xs.mean() + 0.5 - ws / 2, ys.mean() + 0.5 - hs / 2]) / unit_s
        frac = centroid * unit_s / np.array([ws, hs])  # centroid as a signed fraction of the frame
        anchor_out = frac * np.array([w, h]) / unit_o + 0.03 * rng.standard_normal(2)
        offset = centroid

    coefficients = _elastic_coefficients(rng)
    # Only the output box the lesion can reach is resampled: the source lesion's box mapped
    # forward, widened by the largest elastic displacement; everything else is background.
    r0, r1, c0, c1 = _reachable_box(source, linear, offset, anchor_out, (unit_s, unit_o), (w, h))
    mask = np.zeros((h, w), dtype=bool)
    if r1 <= r0 or c1 <= c0:
        return mask
    # Output pixel centres in isotropic units about the output frame's centre.
    qx = (np.arange(c0, c1) + 0.5 - w / 2) / unit_o
    qy = (np.arange(r0, r1) + 0.5 - h / 2) / unit_o
    dx, dy = _elastic_field(coefficients, (w, h), (r0, r1, c0, c1))
    gx = qx[None, :] - anchor_out[0] + dx
    gy = qy[:, None] - anchor_out[1] + dy
    px = linear[0, 0] * gx + linear[0, 1] * gy + offset[0]
    py = linear[1, 0] * gx + linear[1, 1] * gy + offset[1]
    cols = px * unit_s + ws / 2 - 0.5
    rows = py * unit_s + hs / 2 - 0.5
    values = ndimage.map_coordinates(
        source.astype(np.float32), [rows.ravel(), cols.ravel()], order=1, mode="nearest"
    )
    mask[r0:r1, c0:c1] = values.reshape(rows.shape) >= 0.5
    return mask


def _reachable_box(
    source: np.ndarray,
    linear: np.ndarray,
    offset: np.ndarray,
    anchor_out: np.ndarray,
    units: tuple[float, float],
    size: tuple[int, int],
) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the output pixels whose source point can be in the lesion."""
    unit_s, unit_o = units
    w, h = size
    hs, ws = source.shape
    box = bounding_box(source)
    if box is None:
        return 0, 0, 0, 0
    sr0, sr1, sc0, sc1 = box
    corners = np.array([[c, r] for c in (sc0 - 1, sc1 + 1) for r in (sr0 - 1, sr1 + 1)], dtype=float)
    p = (corners - np.array([ws / 2, hs / 2])) / unit_s
    q = (p - offset) @ np.linalg.inv(linear).T + anchor_out
    x, y = q[:, 0] * unit_o + w / 2, q[:, 1] * unit_o + h / 2
    margin = 6 * ELASTIC_AMPLITUDE * unit_o + 2
    c0 = int(np.clip(np.floor(x.min() - margin), 0, w))
    c1 = int(np.clip(np.ceil(x.max() + margin), 0, w))
    r0 = int(np.clip(np.floor(y.min() - margin), 0, h))
    r1 = int(np.clip(np.ceil(y.max() + margin), 0, h))
    return r0, r1, c0, c1


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _frame_preserving_affine(
    rng: np.random.Generator, src_half2: tuple[float, float], out_half2: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """A small rotation, a zoom and a shift whose inverse maps the output frame inside the source.

    Sizes are full frame sides in isotropic units; the result maps output coordinates (about the
    output centre) to source coordinates (about the source centre).
    """
    half_src = np.array(src_half2) / 2
    half_out = np.array(out_half2) / 2
    angle = rng.normal(0.0, np.deg2rad(5.0))
    rot = _rotation(-angle)
    corners = np.array([[sx * half_out[0], sy * half_out[1]] for sx in (-1, 1) for sy in (-1, 1)])
    extent = np.abs(corners @ rot.T).max(axis=0)
    needed = float(np.max(extent / half_src))
    scale = max(rng.uniform(1.0, 1.1), needed)
    slack = np.maximum(half_src - extent / scale, 0.0)
    offset = rng.uniform(-1.0, 1.0, 2) * slack * 0.5
    return rot / scale, offset


def _elastic_coefficients(rng: np.random.Generator) -> np.ndarray:
    """Random weights of the elastic field's cosine modes, (2, F, F), damped at high frequency."""
    k = np.arange(ELASTIC_FREQUENCIES)
    damping = 1.0 / (1.0 + k[:, None] + k[None, :])
    norm = ELASTIC_AMPLITUDE / np.sqrt((damping**2).sum())
    return rng.standard_normal((2, k.size, k.size)) * damping * norm


def _elastic_field(
    coefficients: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The smooth displacement (dx, dy) of a (w, h) frame, evaluated on the pixels of ``box``."""
    w, h = size
    r0, r1, c0, c1 = box
    k = np.arange(coefficients.shape[1])
    bx = np.cos(np.pi * k[:, None] * (np.arange(c0, c1) + 0.5)[None, :] / w)  # (F, box width)
    by = np.cos(np.pi * k[:, None] * (np.arange(r0, r1) + 0.5)[None, :] / h)  # (F, box height)
    return by.T @ coefficients[0] @ bx, by.T @ coefficients[1] @ bx
