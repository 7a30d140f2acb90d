"""Pairing images with masks by stem, split names from folder names, and the generic folder vocabulary."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from lesionaug.dataset.labels import Labels
from lesionaug.dataset.layouts.records import Candidate, Problem
from lesionaug.dataset.layouts.tree import scan_tree

# A mask's stem is the image's stem, optionally followed by one of these (case-insensitive).
MASK_SUFFIX = re.compile(r"(?i)_(mask|segmentation|seg|lesion|label|gt)$")
IMAGE_DIR_NAMES = r"images?|imgs?|inputs?|data"
MASK_DIR_NAMES = r"masks?|labels?|gt|ground_?truth|annotations?|segmentations?"
SPLIT_DIR_NAMES = r"train|training|val|valid|validation|test|testing"

_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
    "test_v2": "test",
}


def split_from_name(word: str) -> str | None:
    """'Training' -> 'train', 'Validation' -> 'val', 'Test_v2' -> 'test'; None for anything else."""
    return _SPLIT_WORDS.get(word.strip().lower())


def mask_key(path: Path) -> str:
    """The image stem a mask file belongs to (lower case, mask suffix removed)."""
    return MASK_SUFFIX.sub("", path.stem).lower()


def is_mask_name(path: Path) -> bool:
    return bool(MASK_SUFFIX.search(path.stem))


def mask_suffix_of(masks: list[Path]) -> str:
    """The most common 'suffix + extension' after the id among mask files, e.g. '_segmentation.png'."""
    if not masks:
        return ".png"
    found = Counter()
    for mask in masks:
        match = MASK_SUFFIX.search(mask.stem)
        found[(match.group(0) if match else "") + mask.suffix] += 1
    return found.most_common(1)[0][0]


def common_suffix(images: list[Path], default: str = ".jpg") -> str:
    if not images:
        return default
    return Counter(p.suffix for p in images).most_common(1)[0][0]


def pair(images: list[Path], masks: list[Path], split: str | None, problems: list[Problem]) -> list[Candidate]:
    """Candidates for images paired with masks by stem; masks with no image are reported."""
    lookup: dict[str, Path] = {}
    for mask in masks:
        lookup.setdefault(mask_key(mask), mask)
    used: set[str] = set()
    out = []
    for image in images:
        key = image.stem.lower()
        mask = lookup.get(key)
        if mask is not None:
            used.add(key)
        out.append(Candidate(id=image.stem, image=image, mask=mask, split=split))
    report_orphan_masks(lookup, used, problems)
    return out


def report_orphan_masks(lookup: dict[str, Path], used: set[str], problems: list[Problem]) -> None:
    for key, mask in sorted(lookup.items()):
        if key not in used:
            problems.append(Problem("orphan_mask", str(mask), "mask has no image with the same stem"))


def attach_labels(
    candidates: list[Candidate], labels: dict[str, Labels], label_file: Path | None, problems: list[Problem]
) -> None:
    """Give each candidate its labels (joined by id) and report label rows whose image is missing."""
    ids = {c.id for c in candidates}
    lower = {c.id.lower(): c.id for c in candidates}
    for c in candidates:
        found = labels.get(c.id)
        if found is None:
            found = next((v for k, v in labels.items() if k.lower() == c.id.lower()), None) if labels else None
        if found is not None:
            c.labels = found
    if label_file is None:
        return
    for key in sorted(labels):
        if key not in ids and key.lower() not in lower:
            problems.append(Problem("orphan_label", str(label_file), f"label row for {key}, but no such image"))


def external_masks(masks_dir: Path) -> list[Path]:
    """Mask files in a folder the user passed (searched like a dataset: junk skipped, nesting unwrapped)."""
    tree = scan_tree(masks_dir, max_depth=3)
    out: list[Path] = []
    for rel in sorted(tree.listings):
        out.extend(tree.image_files(rel))
    return out


def apply_external_masks(candidates: list[Candidate], masks_dir: Path, problems: list[Problem]) -> str:
    """Replace every candidate's mask with the one of the same stem from ``masks_dir`` (or none).

    Returns the suffix those masks use after the id (e.g. ``_mask.png``).
    """
    lookup: dict[str, Path] = {}
    masks = external_masks(masks_dir)
    for mask in masks:
        lookup.setdefault(mask_key(mask), mask)
    used: set[str] = set()
    for c in candidates:
        key = c.id.lower()
        c.mask = lookup.get(key)
        if c.mask is not None:
            used.add(key)
    report_orphan_masks(lookup, used, problems)
    return mask_suffix_of(masks)


def split_images_and_masks(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Separate a folder holding both (ISIC 2016 Part 3B): masks carry a mask suffix."""
    images = [f for f in files if not is_mask_name(f)]
    masks = [f for f in files if is_mask_name(f)]
    return images, masks
