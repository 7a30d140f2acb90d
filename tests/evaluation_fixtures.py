"""Tiny datasets and augmented folders for the evaluation tests: learnable lesions, real provenance files.

``write_blob_dataset`` writes a ``paired_split`` dataset (train/ and test/ with images/ and masks/) of
dark elliptic lesions on noisy skin, which a tiny segmenter learns in a few epochs.
``write_augmented_folder`` writes what ``lesionaug augment`` leaves behind for ``evaluate``: synthetic
pairs, ``lesionaug-manifest.jsonl`` lines with the manifest keys, and ``lesionaug-run.json`` naming
the model folder whose ``lesionaug.json`` lists the generator's training ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lesionaug.formats import MANIFEST_NAME
from lesionaug.output.manifest import MANIFEST_KEYS, manifest_line
from lesionaug.output.run_record import write_run_record


def blob_pair(rng: np.random.Generator, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A dark elliptic lesion on noisy light skin: (uint8 HxWx3 image, bool HxW mask)."""
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    image = np.empty((h, w, 3), dtype=np.float64)
    image[:] = (215, 170, 150)
    image[mask] = (95, 60, 45)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_pair(image_path: Path, mask_path: Path, image: np.ndarray, mask: np.ndarray) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path)
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)


def write_blob_dataset(root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, list[str]]:
    """A paired_split dataset; returns the ids per split."""
    rng = np.random.default_rng(seed)
    ids: dict[str, list[str]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for k in range(n):
            sample_id = f"{split}{k:03d}"
            image, mask = blob_pair(rng)
            write_pair(
                root / split / "images" / f"{sample_id}.png", root / split / "masks" / f"{sample_id}.png", image, mask
            )
            ids[split].append(sample_id)
    return ids


def write_model_card(model_dir: Path, train_ids: list[str]) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    card = {"format": "lesionaug.model/1", "split_fingerprint": "f" * 32, "train_ids": sorted(train_ids)}
    (model_dir / "lesionaug.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return model_dir


def write_augmented_folder(out: Path, n: int, model_dir: Path | None, seed: int = 1, prefix: str = "SYN_") -> list[str]:
    """Synthetic pairs with a manifest and run record (none when ``model_dir`` is None); returns ids."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    lines, ids = [], []
    for index in range(n):
        pair_id = f"{prefix}{index + 1:07d}"
        image, mask = blob_pair(rng)
        image_rel, mask_rel = f"train/images/{pair_id}.png", f"train/masks/{pair_id}.png"
        write_pair(out / image_rel, out / mask_rel, image, mask)
        entry = dict.fromkeys(MANIFEST_KEYS)
        entry.update(
            id=pair_id,
            index=index,
            image=image_rel,
            mask=mask_rel,
            prompt="a dermoscopic image of a skin lesion",
            labels={},
            sha256={},
            version="test",
        )
        lines.append(manifest_line(entry))
        ids.append(pair_id)
    (out / MANIFEST_NAME).write_text("".join(lines), encoding="utf-8")
    if model_dir is not None:
        write_run_record(out, {"status": "complete", "model": {"path": str(model_dir)}})
    return ids
