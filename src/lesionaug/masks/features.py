"""Shape features of a lesion mask, the vocabulary of the realism report.

Every mask is first resized so its longer side is ``ANALYSIS_SIDE`` pixels, so masks of different
resolutions (held-out real masks at their own size, sampled masks at the requested size) are
measured on the same grid.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lesionaug.masks.geometry import resize_mask

ANALYSIS_SIDE = 256
FEATURES = (
    "area_fraction",
    "eccentricity",
    "solidity",
    "perimeter2_area",
    "border_contact",
    "centroid_x",
    "centroid_y",
)


def analysis_size(shape: tuple[int, int]) -> tuple[int, int]:
    """(w, h) of the analysis grid for a mask of ``shape`` (h, w): longer side ANALYSIS_SIDE."""
    h, w = shape
    scale = ANALYSIS_SIDE / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def shape_features(mask: np.ndarray) -> np.ndarray:
    """The ``FEATURES`` of one mask, as a float vector; an empty mask gives NaNs."""
    mask = resize_mask(np.asarray(mask, dtype=bool), analysis_size(mask.shape))
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.full(len(FEATURES), np.nan)
    area = float(xs.size)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    return np.array(
        [
            area / (w * h),
            _eccentricity(xs, ys),
            area / max(_hull_area(mask), area),
            _perimeter(mask) ** 2 / area,
            _border_contact(mask),
            cx / w,
            cy / h,
        ]
    )


def feature_table(masks: Iterable[np.ndarray]) -> np.ndarray:
    """(n, len(FEATURES)) features of many masks."""
    rows = [shape_features(m) for m in masks]
    return np.array(rows).reshape(-1, len(FEATURES))


def _eccentricity(xs: np.ndarray, ys: np.ndarray) -> float:
    """Eccentricity of the ellipse with the same second central moments (0 disc, ->1 line)."""
    if xs.size < 2:
        return 0.0
    cov = np.cov(np.stack([xs, ys]).astype(np.float64), bias=True) + np.eye(2) / 12.0
    small, large = np.linalg.eigvalsh(cov)
    return float(np.sqrt(max(0.0, 1.0 - small / large)))


def _hull_area(mask: np.ndarray) -> float:
    """Area of the convex hull of the foreground pixels' squares."""
    from scipy.spatial import ConvexHull, QhullError

    rows = np.flatnonzero(mask.any(axis=1))
    left = mask[rows].argmax(axis=1)
    right = mask.shape[1] - mask[rows][:, ::-1].argmax(axis=1)
    pts = np.concatenate(
        [
            np.stack([left, rows], 1),
            np.stack([left, rows + 1], 1),
            np.stack([right, rows], 1),
            np.stack([right, rows + 1], 1),
        ]
    ).astype(np.float64)
    try:
        return float(ConvexHull(pts).volume)
    except QhullError:
        return float(mask.sum())


def _perimeter(mask: np.ndarray) -> float:
    """Boundary length: pixel edges between lesion and background (the frame counts as
    background), times pi/4, which makes the count unbiased for outlines of random direction."""
    padded = np.pad(mask, 1)
    cracks = np.count_nonzero(padded[1:, :] != padded[:-1, :]) + np.count_nonzero(
        padded[:, 1:] != padded[:, :-1]
    )
    return float(cracks) * np.pi / 4.0


def _border_contact(mask: np.ndarray) -> float:
    """Fraction of the image frame's pixels covered by the lesion (0 when it is not clipped)."""
    frame = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return float(frame.mean())
