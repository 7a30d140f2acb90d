"""Reader for HAM10000: ``HAM10000_images_part_{1,2}``, ``HAM10000_metadata.csv``, Tschandl's masks."""

from __future__ import annotations

from lesionaug.dataset.label_read import labels_by_id
from lesionaug.dataset.layouts.pairing import (
    attach_labels,
    common_suffix,
    mask_suffix_of,
    pair,
)
from lesionaug.dataset.layouts.records import LabelFile, LayoutRead, LayoutSpec, Problem
from lesionaug.dataset.layouts.tree import Tree

_METADATA = r"HAM10000_metadata(\.csv|\.tab|\.tsv)?"


def detect_ham10000(tree: Tree) -> bool:
    return bool(tree.find_files(_METADATA) or tree.find_dirs(r"HAM10000_images_part_\d+"))


def read_ham10000(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    # Kaggle's copy holds each part twice (HAM10000_images_part_1 and ham10000_images_part_1): keep one.
    names: dict[str, str] = {}
    for rel in tree.find_dirs(r"HAM10000_images(_part_\d+)?"):
        names.setdefault(rel.rsplit("/", 1)[-1].lower(), rel)
    image_dirs = [tree.unwrap(rel) for rel in names.values()]
    mask_dirs = [tree.unwrap(rel) for rel in tree.find_dirs(r"HAM10000_segmentations_lesion_tschandl")]
    images = [img for rel in image_dirs for img in tree.image_files(rel)]
    masks = [m for rel in mask_dirs for m in tree.image_files(rel)]
    candidates = pair(images, masks, None, problems)
    label_files = []
    metadata = tree.find_files(_METADATA)
    if metadata:
        rel = metadata[0]
        labels, raw, key, header = labels_by_id(tree.path(rel))
        label_files.append(LabelFile(rel, "ham10000_metadata", key or "image_id", tuple(header)))
        attach_labels(candidates, labels, tree.path(rel), problems)
        for c in candidates:
            if c.id in raw:
                c.source["label_row"] = raw[c.id]
    image_dir = image_dirs[0] if image_dirs else ""
    mask_dir = mask_dirs[0] if mask_dirs else None
    suffix = mask_suffix_of(masks) if masks else "_segmentation.png"
    ext = common_suffix(images)
    spec = LayoutSpec(
        layout="ham10000",
        image_dir=image_dir,
        mask_dir=mask_dir,
        image_ext=ext,
        mask_suffix=suffix,
        image_template=f"{image_dir}/{{id}}{ext}",
        mask_template=f"{mask_dir}/{{id}}{suffix}" if mask_dir else None,
        label_files=tuple(label_files),
    )
    return LayoutRead("ham10000", candidates, spec, problems)
