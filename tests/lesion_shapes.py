"""Test helpers: irregular lesion masks, and a small paired dataset of them written to disk.

Lesions are star-shaped outlines with a few random Fourier terms (elongated, some clipped by the
frame), then roughened, so they are neither ellipses nor exactly what the shape model assumes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from lesionaug.masks.geometry import (
    fill_polygon,
    keep_one_component,
    polygon_from_radii,
)

DIAGNOSES = ("mel", "nv", "bkl")


def lesion_mask(rng: np.random.Generator, size: tuple[int, int] = (96, 80), diagnosis: str = "nv") -> np.ndarray:
    """One irregular, one-component lesion mask (bool, shape (h, w))."""
    w, h = size
    k = 64
    theta = np.arange(k) * 2 * np.pi / k
    rough = {"mel": 0.35, "nv": 0.12, "bkl": 0.2}.get(diagnosis, 0.2)
    log_r = 0.25 * np.cos(2 * theta)
    for f in range(2, 7):
        log_r += rng.normal(0, rough / f) * np.cos(f * theta + rng.uniform(0, 2 * np.pi))
    area = rng.uniform(0.05, 0.45) if diagnosis != "nv" else rng.uniform(0.03, 0.2)
    radius = np.sqrt(area * w * h / np.pi)
    centre = (rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h)
    mask = fill_polygon(polygon_from_radii(centre, log_r + np.log(radius), rng.uniform(0, np.pi)), (w, h))
    noise = (rng.random(mask.shape) < 0.03) & ndimage.binary_dilation(mask, iterations=1)
    return keep_one_component(ndimage.binary_opening(mask | noise))


def lesion_masks(n: int, seed: int = 0, size: tuple[int, int] = (96, 80)) -> tuple[list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    diagnoses = [DIAGNOSES[i % len(DIAGNOSES)] for i in range(n)]
    return [lesion_mask(rng, size, d) for d in diagnoses], diagnoses


def write_paired_dataset(root: Path, n: int = 30, seed: int = 0, size: tuple[int, int] = (96, 80)) -> Path:
    """``root/{images,masks}`` plus ``labels.csv`` (dx, attributes, site, age, sex); seeded splits."""
    masks, diagnoses = lesion_masks(n, seed, size)
    rng = np.random.default_rng(seed + 1)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (mask, dx) in enumerate(zip(masks, diagnoses)):
        stem = f"case_{i:04d}"
        image = np.full((size[1], size[0], 3), (220, 180, 160), np.uint8)
        image[mask] = (120, 80, 50)
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{stem}.png")
        rows.append(
            {
                "image": stem,
                "dx": dx,
                "pigment_network": str(int(rng.random() < 0.5)),
                "streaks": str(int(dx == "mel" and rng.random() < 0.6)),
                "localization": ["back", "face", "lower extremity", ""][i % 4],
                "age": "" if i % 5 == 0 else str(20 + 5 * (i % 12)),
                "sex": ["male", "female", ""][i % 3],
            }
        )
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root
