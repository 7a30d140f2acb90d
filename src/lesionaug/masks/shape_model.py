"""A statistical lesion-shape model: fitted on training masks, it samples new realistic masks.

Each training lesion becomes a rotation- and size-normalised outline (log radius at ``n_angles``
angles around its centroid; rays clipped by the image border are continued by interpolation) plus
its placement: log size relative to the image, centroid as a fraction of the image, orientation.
Sampling is a kernel density estimate: pick a training lesion, perturb its outline along the
principal components of all outlines (so the shape stays plausible) and its placement by small
jitter, draw it at the requested size and let the image border clip it. Rejection keeps the visible
area inside the range seen in the data. One model per diagnosis with enough lesions, plus a pooled
one as the fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from lesionaug.errors import ConfigError, UsageError
from lesionaug.masks.geometry import (
    fill_censored,
    fit_within,
    keep_one_component,
    polygon_from_radii,
    polygon_spans,
    radial_outline,
    rasterise_one_region,
    resize_mask,
    rotate_periodic,
    spans_area,
    spans_form_one_region,
    spans_to_mask,
)

POOLED = "*"
MIN_LESION_PIXELS = 16


@dataclass(frozen=True)
class ShapeModelConfig:
    """How the shape model is fitted and sampled; recorded in the saved model."""

    n_angles: int = 64
    variance_kept: float = 0.98
    max_components: int = 16
    shape_bandwidth: float = 0.5  # outline jitter, in standard deviations of each component
    position_jitter: float = 0.03  # centroid jitter, as a fraction of the image side
    scale_jitter: float = 0.08  # jitter of the log size
    orientation_jitter: float = 0.3  # radians
    min_per_diagnosis: int = 8
    fit_max_side: int = 256  # masks are downscaled to this before fitting and storing
    max_attempts: int = 32

    def __post_init__(self) -> None:
        if self.n_angles < 8 or self.n_angles % 2:
            raise ConfigError(f"n_angles must be an even number >= 8, got {self.n_angles}")
        if not 0 < self.variance_kept <= 1:
            raise ConfigError(f"variance_kept must be in (0, 1], got {self.variance_kept}")
        if self.max_components < 1 or self.min_per_diagnosis < 2 or self.max_attempts < 1:
            raise ConfigError("max_components, min_per_diagnosis and max_attempts must be positive")
        for name in ("shape_bandwidth", "position_jitter", "scale_jitter", "orientation_jitter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.fit_max_side < 32:
            raise ConfigError(f"fit_max_side must be >= 32, got {self.fit_max_side}")


@dataclass(frozen=True, eq=False)
class LesionShapes:
    """Normalised outlines and placements of a set of training lesions."""

    shapes: np.ndarray  # (n, K): log radius minus its mean, in the lesion's own orientation frame
    log_scale: np.ndarray  # (n,): mean log radius minus log(sqrt(w * h))
    centre: np.ndarray  # (n, 2): centroid (x / w, y / h)
    orientation: np.ndarray  # (n,): major-axis angle in radians
    area: np.ndarray  # (n,): visible area fraction
    clipped: np.ndarray  # (n,): touches the image border

    def __len__(self) -> int:
        return int(self.shapes.shape[0])

    def take(self, rows: np.ndarray) -> LesionShapes:
        return LesionShapes(*(getattr(self, f)[rows] for f in _SHAPE_FIELDS))


_SHAPE_FIELDS = ("shapes", "log_scale", "centre", "orientation", "area", "clipped")


@dataclass(frozen=True, eq=False)
class ShapeGroup:
    """The fitted model of one diagnosis (or of all lesions): outlines plus their principal axes."""

    name: str
    lesions: LesionShapes
    components: np.ndarray  # (m, K) principal directions of the outlines
    sigma: np.ndarray  # (m,) standard deviation along each direction
    area_range: tuple[float, float]


@dataclass(frozen=True, eq=False)
class ShapeModel:
    """Fitted shape groups (pooled under ``POOLED``) and the training masks for ``real`` sampling."""

    config: ShapeModelConfig
    fingerprint: str
    groups: dict[str, ShapeGroup]
    real_masks: tuple[np.ndarray, ...]
    real_diagnoses: tuple[str | None, ...]
    skipped: int = 0
    meta: dict = field(default_factory=dict)

    def group_for(self, diagnosis: str | None) -> ShapeGroup:
        """The diagnosis's own model when it had enough lesions, else the pooled one."""
        return self.groups.get(diagnosis or POOLED) or self.groups[POOLED]

    @property
    def diagnoses(self) -> list[str]:
        return sorted(g for g in self.groups if g != POOLED)

    @property
    def area_range(self) -> tuple[float, float]:
        return self.groups[POOLED].area_range


# ---------------------------------------------------------------------------------------------
# Fitting


def describe_lesion(mask: np.ndarray, n_angles: int = 64) -> dict | None:
    """A mask's normalised outline and placement; None when it has no usable lesion."""
    mask = keep_one_component(np.asarray(mask, dtype=bool))
    if mask.sum() < MIN_LESION_PIXELS:
        return None
    h, w = mask.shape
    outline = radial_outline(mask, n_angles)
    log_r = fill_censored(np.log(outline.radii), outline.censored)
    orientation = _major_axis_angle(log_r)
    shape = rotate_periodic(log_r, orientation)
    mean = float(shape.mean())
    return {
        "shape": shape - mean,
        "log_scale": mean - 0.5 * np.log(w * h),
        "centre": (outline.centre[0] / w, outline.centre[1] / h),
        "orientation": orientation,
        "area": float(mask.mean()),
        "clipped": bool(outline.censored.any()),
    }


def _major_axis_angle(log_r: np.ndarray) -> float:
    """Angle of the major axis from the second moments of the star-shaped region r(theta)."""
    theta = np.arange(log_r.size) * (2 * np.pi / log_r.size)
    r4 = np.exp(4 * log_r)
    ixx = np.sum(r4 * np.cos(theta) ** 2)
    iyy = np.sum(r4 * np.sin(theta) ** 2)
    ixy = np.sum(r4 * np.cos(theta) * np.sin(theta))
    return float(0.5 * np.arctan2(2 * ixy, ixx - iyy))


def fit_shape_model(
    masks: Iterable[np.ndarray],
    diagnoses: Sequence[str | None] | None = None,
    *,
    config: ShapeModelConfig | None = None,
    fingerprint: str = "",
    progress=None,
) -> ShapeModel:
    """Fit the shape model on training masks (bool HxW arrays, read one at a time, so a generator
    keeps memory flat) with optional diagnosis codes, one per mask.

    ``progress``, if given, is called once per mask (e.g. a reporter task's ``advance``).
    """
    config = config or ShapeModelConfig()
    described, kept_diagnoses, stored = [], [], []
    count = 0
    for i, mask in enumerate(masks):
        count += 1
        mask = np.asarray(mask, dtype=bool)
        small = resize_mask(mask, fit_within((mask.shape[1], mask.shape[0]), config.fit_max_side))
        info = describe_lesion(small, config.n_angles)
        if progress is not None:
            progress()
        if info is None:
            continue
        described.append(info)
        kept_diagnoses.append(diagnoses[i] if diagnoses is not None and i < len(diagnoses) else None)
        stored.append(keep_one_component(small))
    if diagnoses is not None and len(diagnoses) != count:
        raise ConfigError(f"{count} masks but {len(diagnoses)} diagnoses")
    if len(described) < 2:
        raise ConfigError(
            f"need at least 2 non-empty training masks to fit a shape model, got {len(described)}",
            fix="check that the dataset's masks are readable and not empty",
        )
    lesions = LesionShapes(
        shapes=np.stack([d["shape"] for d in described]),
        log_scale=np.array([d["log_scale"] for d in described]),
        centre=np.array([d["centre"] for d in described]),
        orientation=np.array([d["orientation"] for d in described]),
        area=np.array([d["area"] for d in described]),
        clipped=np.array([d["clipped"] for d in described]),
    )
    groups = {POOLED: _fit_group(POOLED, lesions, config)}
    codes = np.array([d or "" for d in kept_diagnoses])
    for code in sorted(set(codes) - {""}):
        rows = np.flatnonzero(codes == code)
        if rows.size >= config.min_per_diagnosis:
            groups[code] = _fit_group(code, lesions.take(rows), config)
    return ShapeModel(
        config=config,
        fingerprint=fingerprint,
        groups=groups,
        real_masks=tuple(stored),
        real_diagnoses=tuple(kept_diagnoses),
        skipped=count - len(described),
    )


def _fit_group(name: str, lesions: LesionShapes, config: ShapeModelConfig) -> ShapeGroup:
    centred = lesions.shapes - lesions.shapes.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2 / max(len(lesions) - 1, 1)
    total = variance.sum()
    if total <= 0:
        m = 0
    else:
        m = int(np.searchsorted(np.cumsum(variance) / total, config.variance_kept) + 1)
    m = min(m, config.max_components, len(lesions) - 1, vt.shape[0])
    return ShapeGroup(
        name=name,
        lesions=lesions,
        components=vt[:m].copy(),
        sigma=np.sqrt(variance[:m]),
        area_range=(float(lesions.area.min()), float(lesions.area.max())),
    )


# ---------------------------------------------------------------------------------------------
# Sampling from the model


def sample_model_mask(
    group: ShapeGroup, config: ShapeModelConfig, seed: int, size: tuple[int, int]
) -> np.ndarray:
    w, h = _check_size(size)
    rng = np.random.default_rng(seed)
    lo, hi = group.area_range
    params = None
    for _ in range(config.max_attempts):
        params = _draw_parameters(group, config, rng)
        spans = _spans(params, (w, h))
        if spans_form_one_region(spans, w):
            # Already one region without holes: its area is known before drawing it.
            if lo <= spans_area(spans) / (w * h) <= hi:
                return spans_to_mask(spans, (w, h))
            continue
        mask = keep_one_component(spans_to_mask(spans, (w, h)))
        if lo <= mask.mean() <= hi:
            return mask
    return _render_within_area(params, (w, h), (lo, hi))


def _draw_parameters(group: ShapeGroup, config: ShapeModelConfig, rng: np.random.Generator) -> tuple:
    les = group.lesions
    i = int(rng.integers(len(les)))
    z = rng.standard_normal(group.sigma.size) * group.sigma * config.shape_bandwidth
    shape = les.shapes[i] + z @ group.components
    log_scale = les.log_scale[i] + config.scale_jitter * rng.standard_normal()
    centre = les.centre[i] + config.position_jitter * rng.standard_normal(2)
    orientation = les.orientation[i] + config.orientation_jitter * rng.standard_normal()
    return shape, log_scale, centre, orientation


def _vertices(params: tuple, size: tuple[int, int], extra_log_scale: float = 0.0) -> np.ndarray:
    shape, log_scale, centre, orientation = params
    w, h = size
    log_r = shape + log_scale + extra_log_scale + 0.5 * np.log(w * h)
    return polygon_from_radii((centre[0] * w, centre[1] * h), log_r, orientation)


def _spans(params: tuple, size: tuple[int, int]) -> tuple:
    return polygon_spans(_vertices(params, size), size)


def _render(params: tuple, size: tuple[int, int], extra_log_scale: float = 0.0) -> np.ndarray:
    return rasterise_one_region(_vertices(params, size, extra_log_scale), size)


def _render_within_area(params: tuple, size: tuple[int, int], area: tuple[float, float]) -> np.ndarray:
    """Rescale the outline about its centre (bisection on the log scale) until its visible area
    falls inside ``area``; where pixels are too coarse for that, the closest non-empty mask."""
    lo, hi = area
    low, high = -4.0, 4.0
    best, best_miss = None, np.inf
    for _ in range(40):
        mid = 0.5 * (low + high)
        mask = _render(params, size, mid)
        frac = float(mask.mean())
        if lo <= frac <= hi:
            return mask
        miss = lo - frac if frac < lo else frac - hi
        if frac > 0 and miss < best_miss:
            best, best_miss = mask, miss
        if frac < lo:
            low = mid
        else:
            high = mid
    return best if best is not None else _render(params, size, high)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = int(size[0]), int(size[1])
    if w < 8 or h < 8:
        raise UsageError(f"mask size must be at least 8x8, got {w}x{h}")
    return w, h


def model_summary(model: ShapeModel) -> dict:
    """A JSON-friendly description of a fitted model."""
    return {
        "lesions": len(model.groups[POOLED].lesions),
        "skipped": model.skipped,
        "groups": {
            name: {
                "lesions": len(g.lesions),
                "components": int(g.sigma.size),
                "area_range": list(g.area_range),
                "clipped_fraction": float(g.lesions.clipped.mean()),
            }
            for name, g in model.groups.items()
        },
        "fingerprint": model.fingerprint,
        "config": asdict(model.config),
    }
