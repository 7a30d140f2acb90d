"""Procedural dermoscopy-like images: skin, a lesion whose look follows its diagnosis, attribute textures.

``render_lesion(rng, size, diagnosis, attributes)`` returns the RGB image, the lesion mask and one
region mask per attribute drawn (the pixels where that texture was painted, inside the lesion). The
pieces, in drawing order: textured skin with uneven light; a star-shaped lesion outline (a radius
with random Fourier terms; irregular for melanoma, round for nevi; some clipped by the frame);
pigment colours mixed by smooth noise; the diagnosis's own texture (crusts, lacunae, vessels, scale,
a scar); attribute textures where the labels say (pigment network, negative network, globules,
streaks, milia-like cysts); hairs; the dermatoscope's dark circular vignette; sensor noise.
A ``styles.Style`` sets the skin tones, maps the looks' colours, and picks the light and artefacts
(``artefacts.py``: the deep style's side light, gel bubbles, ruler, ink dots and curly hairs).
Numpy and scipy only, vectorised: a 128 px image takes a few milliseconds. Every exponential,
sine, angle, power, Gaussian kernel and matrix product goes through ``portable_math``, so the same
seed gives the same bytes on every machine (numpy's and OpenBLAS's CPU-chosen kernels do not).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from lesionaug.demo import portable_math as pm
from lesionaug.demo.artefacts import air_bubbles, curly_hairs, ink_dots, ruler, side_light
from lesionaug.demo.styles import (
    BLACK,
    BLUE_GRAY,
    BROWN,
    DARK_BROWN,
    DEEP_RED,
    HAIR,
    LIGHT,
    LIGHT_BROWN,
    MILIA,
    PALE_LINES,
    PALE_PINK,
    PINK,
    PURPLE,
    RED,
    RGB,
    SEPTA,
    TAN,
    VEIL,
    WHITE,
    Style,
)


@dataclass(frozen=True)
class Look:
    """How one diagnosis appears: size, outline irregularity, colours, opacity, edge, own texture."""

    radius: tuple[float, float]  # lesion radius as a fraction of the image size
    irregularity: float  # scale of the outline's Fourier terms
    palette: tuple[RGB, ...]
    n_colours: tuple[int, int]
    opacity: tuple[float, float]
    edge: float  # edge blur as a fraction of the radius (0.02 sharp, 0.2 fading)
    texture: str  # "", "crusty", "lacunae", "vessels", "scaly", "scar"
    center_dark: float = 0.0  # darker centre (nevi) when > 0


_NEVUS = Look((0.10, 0.22), 0.04, (BROWN, LIGHT_BROWN, DARK_BROWN), (1, 2), (0.85, 0.95), 0.10, "", 0.25)
LOOKS: dict[str, Look] = {
    "mel": Look(
        (0.20, 0.42), 0.22, (DARK_BROWN, BLACK, BLUE_GRAY, BROWN, LIGHT_BROWN, WHITE), (3, 5), (0.9, 1.0), 0.06, ""
    ),
    "nv": _NEVUS,
    "nevus": _NEVUS,
    "common_nevus": _NEVUS,
    "atypical_nevus": Look((0.16, 0.30), 0.12, (BROWN, DARK_BROWN, LIGHT_BROWN), (2, 3), (0.85, 0.95), 0.12, "", 0.1),
    "bkl": Look((0.15, 0.32), 0.08, (TAN, LIGHT_BROWN, BROWN), (2, 3), (0.75, 0.9), 0.03, "crusty"),
    "sk": Look((0.15, 0.32), 0.08, (TAN, LIGHT_BROWN, BROWN), (2, 3), (0.75, 0.9), 0.03, "crusty"),
    "bcc": Look((0.12, 0.28), 0.10, (PINK, PALE_PINK), (1, 2), (0.55, 0.7), 0.12, "vessels"),
    "akiec": Look((0.14, 0.30), 0.10, (PINK, RED, LIGHT_BROWN), (2, 3), (0.55, 0.7), 0.15, "scaly"),
    "df": Look((0.08, 0.18), 0.05, (LIGHT_BROWN, TAN), (1, 2), (0.6, 0.75), 0.15, "scar"),
    "vasc": Look((0.08, 0.20), 0.05, (RED, PURPLE, DEEP_RED), (2, 3), (0.85, 0.95), 0.03, "lacunae"),
}
DEFAULT_LOOK = LOOKS["nv"]


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> np.ndarray:
    """(2, size, size) float32 row and column coordinates (shared, read-only)."""
    grid = np.mgrid[0:size, 0:size].astype(np.float32)
    grid.flags.writeable = False
    return grid


@lru_cache(maxsize=64)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """(size, cells + 2) weights that spread a coarse grid smoothly over ``size`` pixels."""
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * cells + 0.5
    w = pm.exp(-((pos[:, None] - np.arange(cells + 2, dtype=np.float32)[None, :]) ** 2) / (2 * 0.55**2))
    w = w / w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-std noise with features about size/cells pixels across."""
    grid = rng.standard_normal((cells + 2, cells + 2)).astype(np.float32)
    w = _upsampler(size, cells)
    field = pm.fixed_order_matmul(pm.fixed_order_matmul(w, grid), w.T).astype(np.float32)
    return (field - field.mean()) / (field.std() + 1e-6)


def worley(rng: np.random.Generator, size: int, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the nearest and second-nearest jittered grid point (F1, F2), in pixels."""
    n = int(np.ceil(size / cell)) + 2
    jitter = rng.uniform(0.1, 0.9, (2, n, n)).astype(np.float32)
    grid = np.arange(n, dtype=np.float32) - 1
    py_grid = (grid[:, None] + jitter[0]) * cell
    px_grid = (grid[None, :] + jitter[1]) * cell
    axis = np.arange(size, dtype=np.float32)
    cells = (axis // cell).astype(int) + 1
    f1 = np.full((size, size), np.inf, np.float32)
    f2 = np.full((size, size), np.inf, np.float32)
    for di in (-1, 0, 1):
        rows = cells + di
        for dj in (-1, 0, 1):
            cols = cells + dj
            py = py_grid.take(rows, axis=0).take(cols, axis=1)
            px = px_grid.take(rows, axis=0).take(cols, axis=1)
            d = (axis[:, None] - py) ** 2 + (axis[None, :] - px) ** 2
            f2 = np.minimum(f2, np.maximum(f1, d))
            f1 = np.minimum(f1, d)
    return np.sqrt(f1), np.sqrt(f2)


def _lerp(a: np.ndarray, colour: RGB | np.ndarray, t: np.ndarray) -> np.ndarray:
    return a * (1 - t[..., None]) + np.asarray(colour, np.float32) * t[..., None]


def skin(rng: np.random.Generator, size: int, style: Style = LIGHT) -> np.ndarray:
    """Skin tone with blotchy colour, fine furrows and pores (and the faint network of darker skin),
    lit brighter at the centre under the dermatoscope's window (the side light comes last)."""
    tones = style.skin_tones
    i, j = rng.choice(len(tones), 2)
    t = rng.uniform()
    base = np.asarray(tones[i], np.float32) * (1 - t) + np.asarray(tones[j], np.float32) * t
    img = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    blotch = smooth_noise(rng, size, 4)
    img = img * (1 + 0.05 * blotch[..., None]) + np.array(style.blotch_tint, np.float32) * blotch[..., None]
    f1, f2 = worley(rng, size, max(4.0, size / 14))
    furrows = pm.exp(-(((f2 - f1) / max(0.8, size / 160)) ** 2)).astype(np.float32)
    furrows *= smooth_noise(rng, size, 5) > -0.3
    img *= 1 - 0.035 * furrows[..., None]
    img *= 1 + 0.025 * rng.standard_normal((size, size, 1)).astype(np.float32)
    if style.skin_network:  # from a child stream: the lesion drawn next is the same in every style
        own = rng.spawn(1)[0]
        lines = network_lines(own, size, max(4.0, size / 18), max(0.7, size / 150))
        img *= 1 - style.skin_network * (lines * (smooth_noise(own, size, 3) > -0.5))[..., None]
    if style.lighting == "dermatoscope":
        yy, xx = (pixel_grid(size) - size / 2) / size
        img *= (1.06 - 0.25 * (xx**2 + yy**2))[..., None]
    return img


def outline(rng: np.random.Generator, size: int, look: Look) -> tuple[np.ndarray, np.ndarray, float]:
    """Lesion mask (star-shaped, Fourier radius), signed distance to its border (px, + inside), radius."""
    clipped = rng.uniform() < 0.15
    radius = size * (rng.uniform(0.42, 0.6) if clipped else rng.uniform(*look.radius))
    if clipped:  # centre pushed towards a side so the frame cuts the lesion
        angle = rng.uniform(0, 2 * np.pi)
        centre = size / 2 + np.array([pm.sin(angle), pm.cos(angle)]) * size * rng.uniform(0.2, 0.3)
    else:
        centre = size / 2 + rng.normal(0, 0.06 * size, 2)
    yy, xx = pixel_grid(size)
    dy, dx = yy - centre[0], xx - centre[1]
    theta = pm.arctan2(dy, dx)
    k = np.arange(2, 10)
    amps = look.irregularity * rng.standard_normal(k.size) / pm.power(k, 0.8)
    amps[0] += rng.uniform(0.05, 0.25)  # elongation
    phases = rng.uniform(0, 2 * np.pi, k.size)
    table = np.linspace(-np.pi, np.pi, 721)
    edge_table = 1 + (amps[:, None] * pm.cos(k[:, None] * table[None] + phases[:, None])).sum(axis=0)
    edge = np.interp(theta, table, edge_table)
    inside = pm.hypot(dy, dx) <= radius * np.clip(edge, 0.35, None)
    inside = ndimage.binary_opening(inside, iterations=1) if inside.sum() > 50 else inside
    labels, n = ndimage.label(inside)
    if n > 1:  # keep one region, like the ISIC 2018 masks
        inside = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    inside = ndimage.binary_fill_holes(inside)
    signed = ndimage.distance_transform_edt(inside) - ndimage.distance_transform_edt(~inside)
    return inside, signed.astype(np.float32), radius


def _zones(rng: np.random.Generator, size: int, n: int, radius: float) -> np.ndarray:
    """n soft weight maps summing to 1, patches about a lesion radius across."""
    cells = max(2, int(size / max(radius, 4.0) * 1.5))
    fields = np.stack([smooth_noise(rng, size, cells) for _ in range(n)])
    weights = pm.exp(2.5 * fields)
    return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)


def network_lines(rng: np.random.Generator, size: int, cell: float, width: float) -> np.ndarray:
    """A reticular honeycomb: 1 on the cell walls of a Worley pattern, 0 in the holes."""
    f1, f2 = worley(rng, size, cell)
    return pm.exp(-(((f2 - f1) / width) ** 2)).astype(np.float32)


def dots(rng: np.random.Generator, size: int, region: np.ndarray, count: int, radius: float) -> np.ndarray:
    """Soft round dots centred on random pixels of ``region``."""
    ys, xs = np.nonzero(region)
    out = np.zeros((size, size), np.float32)
    if ys.size == 0:
        return out
    pick = rng.choice(ys.size, min(count, ys.size), replace=False)
    for p in pick:
        r = radius * rng.uniform(0.7, 1.3)
        y0, y1 = max(0, int(ys[p] - 2 * r - 1)), min(size, int(ys[p] + 2 * r + 2))
        x0, x1 = max(0, int(xs[p] - 2 * r - 1)), min(size, int(xs[p] + 2 * r + 2))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        spot = np.clip(1.5 - pm.hypot(yy - ys[p], xx - xs[p]) / r, 0, 1)
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], spot)
    return out


def radial_streaks(rng: np.random.Generator, signed: np.ndarray, radius: float, count: int) -> np.ndarray:
    """Thin dark lines running outwards through the rim of the lesion (pseudopods / radial streaming)."""
    size = signed.shape[0]
    ys, xs = np.nonzero(signed > 0)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = pixel_grid(size)
    theta = pm.arctan2(yy - cy, xx - cx)
    start = rng.uniform(-np.pi, np.pi)
    angles = np.sort((start + rng.uniform(0, rng.uniform(0.8, 2.5), count) + np.pi) % (2 * np.pi) - np.pi)
    # Angular distance to the nearest streak, then across-line distance in pixels.
    ring = np.concatenate([angles - 2 * np.pi, angles, angles + 2 * np.pi])
    idx = np.clip(np.searchsorted(ring, theta), 1, ring.size - 1)
    gap = np.minimum(np.abs(theta - ring[idx - 1]), np.abs(ring[idx] - theta))
    across = gap * pm.hypot(yy - cy, xx - cx)
    line = np.clip(1.2 - across / max(0.7, size / 180), 0, 1)
    return line * ((signed < 0.3 * radius) & (signed > 0))


def hairs(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Coverage (0..1) of a few thin curved hairs crossing the image."""
    from PIL import Image, ImageDraw

    scale = 2
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(count):
        p0, p1, p2 = rng.uniform(-0.1, 1.1, (3, 2)) * size * scale
        t = np.linspace(0, 1, 40)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        width = max(1, round(rng.uniform(0.6, 1.4) * size * scale / 160))
        draw.line([tuple(p) for p in pts], fill=255, width=width)
    small = canvas.resize((size, size), Image.BILINEAR)
    return np.asarray(small, np.float32) / 255


def vignette(rng: np.random.Generator, size: int) -> np.ndarray:
    """Fraction of light reaching each pixel through the dermatoscope's round window."""
    yy, xx = pixel_grid(size)
    c = size / 2 + rng.normal(0, 0.02 * size, 2)
    r = pm.hypot(yy - c[0], xx - c[1]) / size
    edge = rng.uniform(0.47, 0.6)
    return np.clip((edge - r) / 0.035 + 0.5, 0, 1)


def _attribute_region(
    rng: np.random.Generator, name: str, inside: np.ndarray, signed: np.ndarray, radius: float
) -> np.ndarray:
    """Where an attribute's texture goes: part of the lesion (rim for streaks and globules)."""
    size = inside.shape[0]
    cells = max(2, int(size / max(radius, 4.0)))
    patch = smooth_noise(rng, size, cells) > rng.uniform(-1.0, 0.2)
    if name in ("streaks", "globules"):
        patch = patch | (signed < 0.35 * radius)
    region = inside & patch
    if region.sum() < 0.15 * inside.sum():
        region = inside.copy()
    return region


def render_lesion(
    rng: np.random.Generator,
    size: int,
    diagnosis: str | None,
    attributes: tuple[str, ...] = (),
    style: Style = LIGHT,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One image (uint8 HxWx3), its lesion mask (bool) and a region mask per drawn attribute."""
    look = LOOKS.get(diagnosis or "", DEFAULT_LOOK)
    c = style.colour  # the look's light-style colours in this style
    img = skin(rng, size, style)
    inside, signed, radius = outline(rng, size, look)

    # 1. Pigment: palette colours mixed by smooth noise, denser inside, fading at the border.
    n = int(rng.integers(look.n_colours[0], look.n_colours[1] + 1))
    order = rng.permutation(len(look.palette))[:n] if n < len(look.palette) else np.arange(len(look.palette))
    colours = np.asarray([c(look.palette[i]) for i in sorted(order)], np.float32)
    zones = _zones(rng, size, len(colours), radius)
    pigment = sum(zones[k][..., None] * colours[k] for k in range(len(colours)))  # in order, no BLAS
    depth = np.clip(signed / max(radius, 1.0), 0, 1)
    if look.center_dark:
        pigment *= (1 - look.center_dark * pm.power(depth, 0.7)).astype(np.float32)[..., None]
    pigment *= (1 + 0.06 * smooth_noise(rng, size, max(4, size // 10)))[..., None]
    width = max(0.6, look.edge * radius * rng.uniform(0.6, 1.4))
    alpha = (1 / (1 + pm.exp(-np.clip(signed / width, -30, 30)))).astype(np.float32) * rng.uniform(*look.opacity)
    regions: dict[str, np.ndarray] = {}

    # 2. The diagnosis's own texture.
    if look.texture == "crusty":
        ridges = np.abs(pm.sin(smooth_noise(rng, size, max(6, size // 8)) * 3.0)).astype(np.float32)
        pigment *= (0.8 + 0.3 * ridges)[..., None]
        pigment = _lerp(pigment, c(DARK_BROWN), 0.6 * dots(rng, size, inside, 6, size / 110))
    elif look.texture == "lacunae":
        septa = network_lines(rng, size, max(5.0, radius / 2.5), max(0.8, size / 100))
        pigment = _lerp(pigment, c(SEPTA), 0.55 * septa)
    elif look.texture == "vessels":
        nests = dots(rng, size, inside & (signed > 0.2 * radius), 4, radius / 5)
        pigment = _lerp(pigment, c(BLUE_GRAY), 0.8 * nests)
        vessels = network_lines(rng, size, max(6.0, radius / 1.5), max(0.6, size / 200))
        mask = smooth_noise(rng, size, max(3, size // 24)) > 0.3
        pigment = _lerp(pigment, c(RED), 0.7 * vessels * mask)
    elif look.texture == "scaly":
        scale = np.clip(smooth_noise(rng, size, max(6, size // 6)) - 0.6, 0, 1)
        pigment = _lerp(pigment, c(WHITE), np.clip(scale * 1.5, 0, 0.85))
        pigment = _lerp(pigment, c(WHITE), 0.5 * dots(rng, size, inside, 10, size / 140))
    elif look.texture == "scar":
        centre = np.clip((signed - 0.45 * radius) / max(1.0, 0.15 * radius), 0, 1)
        pigment = _lerp(pigment, c(WHITE), 0.85 * centre)
    img = img * (1 - alpha[..., None]) + pigment * alpha[..., None]

    # 3. Attribute textures, only where the labels say.
    unit = size / 128
    for name in attributes:
        region = _attribute_region(rng, name, inside, signed, radius)
        soft = pm.gaussian_filter(region, 0.8).astype(np.float32)
        if name == "pigment_network":
            lines = network_lines(rng, size, max(4.0, 6 * unit * rng.uniform(0.8, 1.3)), max(0.6, 0.9 * unit))
            img = _lerp(img, c(DARK_BROWN), 0.55 * lines * soft)
        elif name == "negative_network":
            lines = network_lines(rng, size, max(5.0, 8 * unit), max(0.7, 1.1 * unit))
            img = _lerp(img, c(DARK_BROWN), 0.3 * (1 - lines) * soft)
            img = _lerp(img, c(PALE_LINES), 0.3 * lines * soft)
        elif name == "globules":
            spots = dots(rng, size, region, int(rng.integers(8, 20)), max(1.0, 2.0 * unit))
            img = _lerp(img, c(DARK_BROWN) if rng.uniform() < 0.6 else c(BLACK), 0.85 * spots)
        elif name == "streaks":
            lines = radial_streaks(rng, signed, radius, int(rng.integers(8, 16)))
            region = region & (lines > 0.2) | (region & (signed < 0.35 * radius))
            img = _lerp(img, c(BLACK), 0.7 * lines)
        elif name == "milia_like_cyst":
            spots = dots(rng, size, region, int(rng.integers(4, 12)), max(0.8, 1.5 * unit))
            img = _lerp(img, c(MILIA), 0.85 * spots)
        elif name == "atypical_pigment_network":  # PH2: thick, dark, irregular meshes
            lines = network_lines(rng, size, max(5.0, 9 * unit * rng.uniform(0.7, 1.5)), max(0.9, 1.6 * unit))
            img = _lerp(img, c(BLACK), 0.6 * lines * soft * (0.6 + 0.4 * (smooth_noise(rng, size, 6) > 0)))
        elif name == "dots_globules":
            spots = dots(rng, size, region, int(rng.integers(10, 24)), max(0.8, 1.6 * unit))
            img = _lerp(img, c(DARK_BROWN), 0.85 * spots)
        elif name == "regression":  # white scar-like areas with blue-gray peppering
            img = _lerp(img, c(WHITE), 0.6 * soft)
            img = _lerp(img, c(BLUE_GRAY), 0.7 * dots(rng, size, region, 15, max(0.6, 0.8 * unit)))
        elif name == "blue_whitish_veil":
            img = _lerp(img, c(VEIL), 0.65 * soft)
        regions[name] = region

    # 4. Hairs, the light (the dermatoscope's vignette, or the side light and its artefacts), sensor noise.
    draw_hairs = curly_hairs if style.curly_hairs else hairs
    img = _lerp(img, c(HAIR), 0.85 * draw_hairs(rng, size, int(rng.poisson(style.hair_rate))))
    if style.lighting == "dermatoscope":
        if signed.max() < 0.45 * size and rng.uniform() < 0.75:  # zoomed-in (clipped) lesions fill the frame
            img = _lerp(np.full_like(img, 10.0), img, vignette(rng, size))
    else:
        img = air_bubbles(rng, img, int(rng.poisson(style.bubbles)))
        if rng.uniform() < style.ruler:
            img = ruler(rng, img)
        elif rng.uniform() < style.ink:
            img = ink_dots(rng, img)
        img = side_light(rng, img)
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), inside, regions
