"""Lesion outlines as radial functions, and their exact rasterisation into binary masks.

A lesion is described by its radius as a function of angle around a centre (a star-shaped
outline). ``radial_outline`` measures it on a mask, marking the rays that leave the image while
still inside the lesion (the lesion is clipped there, so the radius is only a lower bound).
``fill_polygon`` rasterises a polygon by an exact scan at pixel centres, so a mask has no
anti-aliasing grey and no outline dilation; ``keep_one_component`` makes the result one
4-connected region without holes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RadialOutline:
    """A mask's outline seen from ``centre``: ``radii[k]`` along angle ``2*pi*k/K``.

    Coordinates are pixels with pixel centres at ``i + 0.5``. ``censored[k]`` is True where the ray
    left the image while still inside the lesion, so ``radii[k]`` is a lower bound.
    """

    centre: tuple[float, float]
    radii: np.ndarray
    censored: np.ndarray


def angles(n: int) -> np.ndarray:
    return np.arange(n) * (2.0 * np.pi / n)


def mask_centroid(mask: np.ndarray) -> tuple[float, float]:
    """Centroid (x, y) of the foreground in pixel coordinates (pixel centres at i + 0.5)."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("empty mask has no centroid")
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def radial_outline(mask: np.ndarray, n_angles: int = 64, step: float = 0.5) -> RadialOutline:
    """Outermost lesion radius along ``n_angles`` rays from the centroid, to a fraction of a pixel.

    Each ray samples the bilinearly interpolated mask every ``step`` pixels up to the image
    border; its radius is where the interpolated value last crosses 0.5 (so pixel staircases do
    not become outline wiggles). A ray whose last in-image sample is inside the lesion is censored.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    cx, cy = mask_centroid(mask)
    theta = angles(n_angles)
    dist = np.arange(0.0, float(np.hypot(w, h)) + 2 * step, step)
    px = cx + np.cos(theta)[:, None] * dist[None, :]
    py = cy + np.sin(theta)[:, None] * dist[None, :]
    inside_image = (px >= 0) & (px <= w) & (py >= 0) & (py <= h)
    values = ndimage.map_coordinates(
        mask.astype(np.float32), [py.ravel() - 0.5, px.ravel() - 0.5], order=1, mode="nearest"
    ).reshape(px.shape)
    values = np.where(inside_image, values, 0.0)
    j = np.arange(dist.size)
    hit = values >= 0.5
    last_hit = np.where(hit, j[None, :], -1).max(axis=1)
    last_in_image = np.where(inside_image, j[None, :], -1).max(axis=1)
    censored = (last_hit == last_in_image) & (last_hit >= 0)
    rows = np.arange(n_angles)
    k = np.maximum(last_hit, 0)
    v0 = values[rows, k]
    v1 = values[rows, np.minimum(k + 1, dist.size - 1)]
    frac = np.clip((v0 - 0.5) / np.maximum(v0 - v1, 1e-6), 0.0, 1.0)
    radii = np.where(censored, dist[k], dist[k] + step * frac)
    radii = np.where(last_hit >= 0, np.maximum(radii, 0.5 * step), 0.5 * step)
    return RadialOutline(centre=(cx, cy), radii=radii.astype(np.float64), censored=censored)


def fill_censored(log_radii: np.ndarray, censored: np.ndarray, min_observed: int = 8) -> np.ndarray:
    """Continue the outline through clipped rays by periodic interpolation of the observed ones.

    The interpolated value never goes below the measured lower bound. With fewer than
    ``min_observed`` uncensored rays there is nothing to interpolate from and the bounds are kept.
    """
    observed = ~censored
    if observed.sum() < min_observed or observed.all():
        return log_radii.copy()
    n = log_radii.size
    k = np.arange(n)
    ko = k[observed]
    # Periodic linear interpolation: pad the observed angles by one period on each side.
    xp = np.concatenate([ko - n, ko, ko + n])
    fp = np.tile(log_radii[observed], 3)
    filled = np.interp(k, xp, fp)
    return np.where(censored, np.maximum(filled, log_radii), log_radii)


def rotate_periodic(values: np.ndarray, shift: float) -> np.ndarray:
    """Resample a periodic function at ``theta + shift`` by exact trigonometric interpolation."""
    n = values.size
    spectrum = np.fft.rfft(values)
    freqs = np.arange(spectrum.size)
    shifted = spectrum * np.exp(1j * freqs * shift)
    if n % 2 == 0:
        # The Nyquist term is real for a real signal; keep its cosine part.
        shifted[-1] = spectrum[-1] * np.cos(freqs[-1] * shift)
    return np.fft.irfft(shifted, n)


def upsample_periodic(values: np.ndarray, n_out: int) -> np.ndarray:
    """Band-limited (trigonometric) interpolation of a periodic function to ``n_out`` samples."""
    n = values.size
    if n_out == n:
        return values.copy()
    spectrum = np.fft.rfft(values)
    if n % 2 == 0:
        spectrum[-1] *= 0.5  # split the Nyquist term evenly between +/- frequencies
    out = np.zeros(n_out // 2 + 1, dtype=complex)
    m = min(spectrum.size, out.size)
    out[:m] = spectrum[:m]
    return np.fft.irfft(out, n_out) * (n_out / n)


def polygon_from_radii(
    centre: tuple[float, float], log_radii: np.ndarray, orientation: float, n_vertices: int = 256
) -> np.ndarray:
    """Vertices (x, y) of the star-shaped outline ``exp(log_radii)`` rotated by ``orientation``."""
    dense = upsample_periodic(log_radii, n_vertices)
    theta = angles(n_vertices) + orientation
    r = np.exp(dense)
    return np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], axis=1)


def fill_polygon(vertices: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact scan-line fill: pixel (i, j) is set when its centre (i + .5, j + .5) is inside.

    Uses the even-odd rule on the polygon's edges, so a simple polygon gives exactly the set of
    pixel centres inside it, independent of the polygon's orientation.
    """
    return spans_to_mask(polygon_spans(vertices, size), size)


def polygon_spans(vertices: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The polygon's inside as row spans ``(rows, start, end)``: columns start..end-1 of each row.

    Spans are sorted by row then column, clipped to the image, and non-empty.
    """
    w, h = size
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo_y, hi_y = np.minimum(y0, y1), np.maximum(y0, y1)
    # Rows whose centre c = j + 0.5 satisfies lo_y <= c < hi_y (half-open: each vertex counted once).
    first = np.clip(np.ceil(lo_y - 0.5), 0, h).astype(np.int64)
    last = np.clip(np.ceil(hi_y - 0.5), 0, h).astype(np.int64)
    counts = np.maximum(last - first, 0)
    empty = np.zeros(0, dtype=np.int64)
    if counts.sum() == 0:
        return empty, empty, empty
    edge = np.repeat(np.arange(vertices.shape[0]), counts)
    offsets = np.arange(edge.size) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = first[edge] + offsets
    t = (rows + 0.5 - y0[edge]) / (y1[edge] - y0[edge])
    xs = x0[edge] + t * (x1[edge] - x0[edge])
    # Sort crossings by row then x; the even-odd rule pairs them into spans.
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    span_rows = rows[0::2]
    if span_rows.size != rows[1::2].size or np.any(span_rows != rows[1::2]):
        raise ValueError("polygon is not closed: unpaired edge crossings")
    start = np.clip(np.ceil(xs[0::2] - 0.5), 0, w).astype(np.int64)
    end = np.clip(np.ceil(xs[1::2] - 0.5), 0, w).astype(np.int64)
    keep = end > start
    return span_rows[keep], start[keep], end[keep]


def spans_to_mask(spans: tuple[np.ndarray, np.ndarray, np.ndarray], size: tuple[int, int]) -> np.ndarray:
    rows, start, end = spans
    w, h = size
    out = np.zeros((h, w), dtype=bool)
    if rows.size == 0:
        return out
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(start.min()), int(end.max())
    if rows.size == r1 - r0 and np.all(np.diff(rows) == 1):
        # One span per row (the common case): a broadcast comparison fills the box.
        cols = np.arange(c0, c1)
        out[r0:r1, c0:c1] = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
        return out
    # Several spans on some rows: mark starts and ends, then integrate along x inside the box.
    marks = np.zeros((r1 - r0, c1 - c0 + 1), dtype=np.int16)
    np.add.at(marks, (rows - r0, start - c0), 1)
    np.add.at(marks, (rows - r0, end - c0), -1)
    out[r0:r1, c0:c1] = np.cumsum(marks[:, :-1], axis=1, dtype=np.int16) > 0
    return out


def spans_area(spans: tuple[np.ndarray, np.ndarray, np.ndarray]) -> int:
    """Pixel count of the spans."""
    return int(np.sum(spans[2] - spans[1]))


def spans_form_one_region(spans: tuple[np.ndarray, np.ndarray, np.ndarray], width: int) -> bool:
    """True when the spans are certainly one 4-connected region without holes.

    Spans are the cells of the region; two spans touch when they lie in consecutive rows and
    share a column. Without corner-only contacts (which 4- and 8-connectivity read differently),
    the region is a union of rectangles whose overlaps form this span graph, so it has one
    component and no hole exactly when the graph is a tree: connected with V - 1 edges.
    False means "not certain": the caller cleans the mask up with ``keep_one_component``.
    """
    rows, start, end = spans
    n = rows.size
    if n == 0 or np.any(np.diff(rows) > 1):
        return False
    same_row = rows[1:] == rows[:-1]
    if not same_row.any():
        # One span per row: a tree exactly when consecutive spans share a column.
        return bool(np.all(np.maximum(start[1:], start[:-1]) < np.minimum(end[1:], end[:-1])))
    if np.any(same_row & (end[:-1] >= start[1:])):
        return False  # abutting spans in a row
    stride = width + 2  # row-major keys: a row's keys never reach the next row's
    start_key, end_key = rows * stride + start, rows * stride + end
    above_start, above_end = (rows - 1) * stride + start, (rows - 1) * stride + end
    # Spans i of the row above overlapping span j: end_i > start_j and start_i < end_j; since
    # spans of a row are disjoint and sorted, they form the index range [first, stop).
    first = np.searchsorted(end_key, above_start, side="right")
    stop = np.searchsorted(start_key, above_end, side="left")
    corner = (np.searchsorted(end_key, above_start, side="left") < first) | (
        np.searchsorted(start_key, above_end, side="right") > stop
    )
    if corner.any():
        return False
    counts = np.maximum(stop - first, 0)
    if int(counts.sum()) != n - 1:
        return False
    # V - 1 edges: a tree exactly when connected. Contract the links between consecutive rows
    # that hold one span each (they cannot change connectivity), then join what is left.
    per_row = np.bincount(rows - rows[0])
    alone = per_row[rows - rows[0]] == 1
    link = (counts == 1) & alone & alone[np.clip(first, 0, n - 1)]
    group = np.cumsum(~link) - 1
    rest = (counts > 0) & ~link
    source = np.repeat(np.flatnonzero(rest), counts[rest])
    offsets = np.arange(source.size) - np.repeat(np.cumsum(counts[rest]) - counts[rest], counts[rest])
    target = np.repeat(first[rest], counts[rest]) + offsets
    return _count_components(int(group[-1]) + 1, group[source], group[target]) == 1


def _count_components(n: int, source: np.ndarray, target: np.ndarray) -> int:
    """Connected components of an undirected graph with few edges (union-find)."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    components = n
    for a, b in zip(source.tolist(), target.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            components -= 1
    return components


def rasterise_one_region(vertices: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fill the polygon exactly and make it one region without holes (cheaply when it already is)."""
    spans = polygon_spans(vertices, size)
    mask = spans_to_mask(spans, size)
    return mask if spans_form_one_region(spans, size[0]) else keep_one_component(mask)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1) of the foreground, end-exclusive; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def keep_one_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` with its holes filled (works on the bbox)."""
    from scipy import ndimage

    box = bounding_box(mask)
    if box is None:
        return mask.astype(bool, copy=True)
    r0, r1, c0, c1 = box
    # Pad the crop by one background pixel so background touching the crop edge is "outside".
    crop = np.zeros((r1 - r0 + 2, c1 - c0 + 2), dtype=bool)
    crop[1:-1, 1:-1] = mask[r0:r1, c0:c1]
    labels, n = ndimage.label(crop)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        crop = labels == int(sizes.argmax())
    background, nb = ndimage.label(~crop)
    if nb > 1:
        edge_labels = np.unique(
            np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
        )
        holes = ~np.isin(background, edge_labels) & (background > 0)
        crop = crop | holes
    out = np.zeros_like(mask, dtype=bool)
    out[r0:r1, c0:c1] = crop[1:-1, 1:-1]
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to ``size`` (w, h): area average when shrinking, then threshold at 0.5."""
    from PIL import Image

    h, w = mask.shape
    if (w, h) == tuple(size):
        return np.asarray(mask, dtype=bool).copy()
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    resample = Image.Resampling.BOX if size[0] <= w and size[1] <= h else Image.Resampling.BILINEAR
    return np.asarray(img.resize(tuple(size), resample=resample)) >= 128


def fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(w, h) scaled down so the longer side is at most ``max_side`` (never scaled up)."""
    w, h = size
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))
