"""The deep style's light and artefacts, painted over a rendered image (the lesion mask is untouched).

``side_light``: a rectangular field (no round window) lit from one side, its corners a little dim,
with a cool or warm white balance. ``air_bubbles``: immersion-gel bubbles, bright thin rings with a
paler inside and a specular spot. ``ruler``: a translucent scale with millimetre ticks along one
border. ``ink_dots``: marker-pen dots along one border. ``curly_hairs``: coverage of dark, tightly
curled hairs. Only IEEE-exact arithmetic and ``portable_math``, as in ``render.py``.
"""

from __future__ import annotations

import numpy as np

from lesionaug.demo import portable_math as pm

RING: tuple[int, int, int] = (236, 238, 242)
SCALE_TICKS: tuple[int, int, int] = (20, 20, 24)
SCALE_BAND: tuple[int, int, int] = (205, 205, 200)
INK: tuple[int, int, int] = (58, 40, 104)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy, xx


def _lerp(img: np.ndarray, colour, t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, np.float32)[..., None]
    return img * (1 - t) + np.asarray(colour, np.float32) * t


def side_light(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Light falling off from one side across a rectangular field, dim corners, cool or warm balance."""
    size = img.shape[0]
    yy, xx = _grid(size)
    yy, xx = yy / size - 0.5, xx / size - 0.5
    angle = rng.uniform(-np.pi, np.pi)
    along = xx * pm.cos(angle) + yy * pm.sin(angle)  # -0.7 .. 0.7, brightest at -0.7
    falloff = rng.uniform(0.25, 0.45)
    light = 1.08 - falloff * np.clip(along + 0.5, 0, 1.2)
    light *= 1 - 0.5 * (xx * xx) * (yy * yy) * 16  # a soft rectangle: dimmer only towards the corners
    warm = rng.uniform(-1, 1)  # < 0 cool (blue-white LEDs), > 0 warm (halogen)
    cast = 1.0 if warm > 0 else 0.6  # a strong cool cast turns brown skin green-grey
    balance = np.array([1 + 0.07 * cast * warm, 1.0, 1 - 0.09 * cast * warm], np.float32)
    return img * light.astype(np.float32)[..., None] * balance


def air_bubbles(rng: np.random.Generator, img: np.ndarray, count: int) -> np.ndarray:
    """Gel air bubbles: a bright thin ring, a slightly paler inside and a small highlight."""
    size = img.shape[0]
    yy, xx = _grid(size)
    width = max(0.6, size / 220)
    for _ in range(count):
        cy, cx = rng.uniform(0, size, 2)
        r = size * rng.uniform(0.015, 0.07)
        d = pm.hypot(yy - cy, xx - cx)
        ring = pm.exp(-(((d - r) / width) ** 2))
        inside = np.clip((r - d) / width, 0, 1)
        spot = pm.exp(-((pm.hypot(yy - cy + 0.45 * r, xx - cx + 0.35 * r) / max(0.7, 0.18 * r)) ** 2))
        img = _lerp(img, img * 1.12 + 8, 0.8 * inside)
        img = _lerp(img, RING, 0.75 * ring)
        img = _lerp(img, (255, 255, 255), 0.8 * spot)
    return img


def ruler(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A translucent scale along one border: a pale band, a tick per millimetre, longer every fifth."""
    size = img.shape[0]
    yy, xx = _grid(size)
    side = int(rng.integers(4))
    depth = (yy, size - 1 - yy, xx, size - 1 - xx)[side]  # distance from that border
    along = (xx, xx, yy, yy)[side]
    band = size * rng.uniform(0.07, 0.1)
    mm = size * rng.uniform(0.025, 0.04)
    offset = rng.uniform(0, mm)
    k = np.rint((along - offset) / mm)
    gap = np.abs(along - offset - k * mm)
    half = max(0.45, size / 400)
    long = np.mod(k, 5) == 0
    length = np.where(long, 0.85, 0.5) * band
    ticks = np.clip(half + 0.5 - gap, 0, 1) * np.clip(length - depth, 0, 1)
    img = _lerp(img, SCALE_BAND, 0.28 * np.clip(band - depth, 0, 1))
    return _lerp(img, SCALE_TICKS, 0.85 * ticks)


def ink_dots(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Three to six marker-pen dots in a row along one border."""
    size = img.shape[0]
    yy, xx = _grid(size)
    side = int(rng.integers(4))
    count = int(rng.integers(3, 7))
    inset = size * rng.uniform(0.04, 0.09)
    start, step = size * rng.uniform(0.1, 0.3), size * rng.uniform(0.1, 0.16)
    for k in range(count):
        along = start + k * step + rng.normal(0, 0.01 * size)
        across = inset + rng.normal(0, 0.01 * size)
        cy, cx = [(across, along), (size - across, along), (along, across), (along, size - across)][side]
        r = size * rng.uniform(0.012, 0.022)
        d = pm.hypot(yy - cy, xx - cx)
        img = _lerp(img, INK, 0.8 * np.clip((r - d) / max(0.6, 0.3 * r) + 0.5, 0, 1))
    return img


def curly_hairs(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Coverage (0..1) of dark, tightly curled hairs: a curve with small loops along it."""
    from PIL import Image, ImageDraw

    scale = 2
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    t = np.linspace(0, 1, 160)[:, None]
    for _ in range(count):
        p0, p1, p2 = rng.uniform(-0.05, 1.05, (3, 2)) * size * scale
        base = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        turns = rng.uniform(4, 9)
        coil = size * scale * rng.uniform(0.012, 0.025)
        phase = 2 * np.pi * turns * t[:, 0] + rng.uniform(0, 2 * np.pi)
        pts = base + coil * np.stack([pm.cos(phase), pm.sin(phase)], axis=1)
        width = max(1, round(rng.uniform(1.0, 1.8) * size * scale / 160))
        draw.line([tuple(p) for p in pts], fill=255, width=width)
    small = canvas.resize((size, size), Image.BILINEAR)
    return np.asarray(small, np.float32) / 255
