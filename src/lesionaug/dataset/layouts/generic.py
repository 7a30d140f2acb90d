"""Readers for folders without a challenge name: an ISIC Archive download and generic image/mask folders.

``isic_archive`` is the flat ``isic image download`` output (``metadata.csv`` whose first column is
``isic_id``), with masks from a folder the user passes (or a mask-named folder beside it).
``paired_split`` is ``{train,val,test}/{images,masks}`` (or ``{images,masks}/{train,val,test}``);
``paired`` is sibling image and mask folders. Both take labels from any CSV keyed by an image column.
"""

from __future__ import annotations

import re

from lesionaug.dataset.label_read import labels_by_id, read_csv_rows
from lesionaug.dataset.layouts.pairing import (
    IMAGE_DIR_NAMES,
    MASK_DIR_NAMES,
    SPLIT_DIR_NAMES,
    attach_labels,
    common_suffix,
    mask_suffix_of,
    pair,
    split_from_name,
)
from lesionaug.dataset.layouts.records import (
    Candidate,
    LabelFile,
    LayoutRead,
    LayoutSpec,
    Problem,
)
from lesionaug.dataset.layouts.tree import Tree

_MAX_BASE_DEPTH = 3


def _archive_metadata(tree: Tree) -> str | None:
    for rel in tree.find_files(r"metadata\.csv", max_depth=_MAX_BASE_DEPTH + 1):
        try:
            with open(tree.path(rel), encoding="utf-8-sig", errors="replace") as fh:
                first = fh.readline().split(",")[0].strip().strip('"').lower()
        except OSError:
            continue
        if first == "isic_id":
            return rel
    return None


def detect_isic_archive(tree: Tree) -> bool:
    return _archive_metadata(tree) is not None


def _child(tree: Tree, base: str, pattern: str) -> str | None:
    listing = tree.listings.get(base)
    if listing is None:
        return None
    rx = re.compile(pattern, re.IGNORECASE)
    names = [d for d in listing.dirs if rx.fullmatch(d)]
    return tree.unwrap(f"{base}/{names[0]}" if base else names[0]) if names else None


def read_isic_archive(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    rel = _archive_metadata(tree)
    base = rel.rsplit("/", 1)[0] if "/" in rel else ""
    labels, raw, key, header = labels_by_id(tree.path(rel))
    # ISIC ids, and any other image the metadata lists (pairs added by `lesionaug augment`).
    images = [p for p in tree.image_files(base) if re.fullmatch(r"(?i)ISIC_\d+", p.stem) or p.stem in raw]
    mask_rel = _child(tree, base, MASK_DIR_NAMES)
    masks = tree.image_files(mask_rel) if mask_rel else []
    candidates = pair(images, masks, None, problems)
    attach_labels(candidates, labels, tree.path(rel), problems)
    for c in candidates:
        if c.id in raw:
            c.source["label_row"] = raw[c.id]
            license_ = raw[c.id].get("copyright_license")
            if license_:
                c.source["license"] = license_
    ext = common_suffix(images)
    suffix = mask_suffix_of(masks) if masks else ".png"
    spec = LayoutSpec(
        layout="isic_archive",
        image_dir=base,
        mask_dir=mask_rel,
        image_ext=ext,
        mask_suffix=suffix,
        image_template=f"{base}/{{id}}{ext}" if base else f"{{id}}{ext}",
        mask_template=f"{mask_rel}/{{id}}{suffix}" if mask_rel else None,
        label_files=(LabelFile(rel, "isic_archive_metadata", key or "isic_id", tuple(header)),),
    )
    return LayoutRead("isic_archive", candidates, spec, problems)


def _bases(tree: Tree) -> list[str]:
    return sorted((r for r in tree.listings if tree.depth(r) <= _MAX_BASE_DEPTH), key=lambda r: (tree.depth(r), r))


def _split_pairs(tree: Tree, base: str) -> list[tuple[str, str, str]]:
    """(split, image folder, mask folder) under ``base`` in either nesting order."""
    listing = tree.listings[base]
    rx_split = re.compile(SPLIT_DIR_NAMES, re.IGNORECASE)
    found = []
    for name in listing.dirs:  # {train,val,test}/{images,masks}
        if rx_split.fullmatch(name):
            split_rel = f"{base}/{name}" if base else name
            images, masks = _child(tree, split_rel, IMAGE_DIR_NAMES), _child(tree, split_rel, MASK_DIR_NAMES)
            if images and masks:
                found.append((split_from_name(name), images, masks))
    if found:
        return found
    images, masks = _child(tree, base, IMAGE_DIR_NAMES), _child(tree, base, MASK_DIR_NAMES)
    if images and masks:  # {images,masks}/{train,val,test}
        for name in tree.listings[images].dirs:
            if rx_split.fullmatch(name):
                mask_split = _child(tree, masks, re.escape(name))
                if mask_split:
                    found.append((split_from_name(name), tree.unwrap(f"{images}/{name}"), mask_split))
    return found


def detect_paired_split(tree: Tree) -> bool:
    return any(_split_pairs(tree, base) for base in _bases(tree))


def detect_paired(tree: Tree) -> bool:
    return any(_child(tree, b, IMAGE_DIR_NAMES) and _child(tree, b, MASK_DIR_NAMES) for b in _bases(tree))


def _labels_csvs(tree: Tree, folders: list[str]) -> list[str]:
    """CSV files directly in these folders whose header has an image id column."""
    out = []
    for folder in folders:
        for name in sorted(tree.files(folder)):
            if name.lower().endswith((".csv", ".tsv")):
                rel = f"{folder}/{name}" if folder else name
                header, _ = read_csv_rows(tree.path(rel))
                if any(k in header for k in ("image", "image_id", "isic_id", "image_name")):
                    out.append(rel)
    return out


def _read_paired(
    tree: Tree, layout: str, groups: list[tuple[str | None, str, str]], csv_folders: list[str]
) -> LayoutRead:
    problems: list[Problem] = []
    candidates: list[Candidate] = []
    all_masks = []
    for split, image_rel, mask_rel in groups:
        masks = tree.image_files(mask_rel)
        all_masks += masks
        candidates += pair(tree.image_files(image_rel), masks, split, problems)
    label_files = []
    for rel in _labels_csvs(tree, csv_folders):
        labels, raw, key, header = labels_by_id(tree.path(rel))
        label_files.append(LabelFile(rel, "labels_csv", key or "image", tuple(header)))
        attach_labels(candidates, labels, tree.path(rel), problems)
        for c in candidates:
            if c.id in raw:
                c.source["label_row"] = raw[c.id]
    train = next((g for g in groups if g[0] == "train"), groups[0])
    ext = common_suffix([c.image for c in candidates], ".png")
    suffix = mask_suffix_of(all_masks)
    spec = LayoutSpec(
        layout=layout,
        image_dir=train[1],
        mask_dir=train[2],
        image_ext=ext,
        mask_suffix=suffix,
        image_template=f"{train[1]}/{{id}}{ext}",
        mask_template=f"{train[2]}/{{id}}{suffix}",
        label_files=tuple(label_files),
    )
    return LayoutRead(layout, candidates, spec, problems)


def read_paired_split(tree: Tree) -> LayoutRead:
    base = next(b for b in _bases(tree) if _split_pairs(tree, b))
    groups = _split_pairs(tree, base)
    parents = sorted({g[1].rsplit("/", 1)[0] if "/" in g[1] else "" for g in groups} - {base})
    return _read_paired(tree, "paired_split", groups, [base, *parents])


def read_paired(tree: Tree) -> LayoutRead:
    base = next(b for b in _bases(tree) if _child(tree, b, IMAGE_DIR_NAMES) and _child(tree, b, MASK_DIR_NAMES))
    groups = [(None, _child(tree, base, IMAGE_DIR_NAMES), _child(tree, base, MASK_DIR_NAMES))]
    return _read_paired(tree, "paired", groups, [base])
