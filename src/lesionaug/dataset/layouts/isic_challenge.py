"""Readers for the ISIC challenge layouts: 2018 Task 1/2 (+ Task 3 labels), 2018 Task 3, 2017 and 2016.

Folder and file names follow DATASETS.md section 1; each reader pairs images with masks by id, joins
the layout's own label files, and takes splits from the folder names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from lesionaug.dataset.files import mask_has_foreground, read_image
from lesionaug.dataset.label_read import isic2016_labels, labels_by_id
from lesionaug.dataset.labels import Labels
from lesionaug.dataset.layouts.pairing import (
    attach_labels,
    common_suffix,
    mask_suffix_of,
    pair,
    split_from_name,
    split_images_and_masks,
)
from lesionaug.dataset.layouts.records import (
    Candidate,
    LabelFile,
    LayoutRead,
    LayoutSpec,
    Problem,
)
from lesionaug.dataset.layouts.tree import Tree
from lesionaug.errors import DatasetError

_S = r"(?P<s>Training|Validation|Test_v2|Test)"
TASK2_ATTRIBUTES = ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")
PART2_ATTRIBUTES = ("milia_like_cyst", "negative_network", "pigment_network", "streaks")
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def split_dirs(tree: Tree, pattern: str) -> list[tuple[str, str]]:
    """(split, content folder) for every folder matching ``pattern`` (group ``s`` is the split word)."""
    rx = re.compile(pattern, re.IGNORECASE)
    out = []
    for rel in tree.find_dirs(pattern):
        split = split_from_name(rx.fullmatch(rel.rsplit("/", 1)[-1]).group("s"))
        out.append((split, tree.unwrap(rel)))
    return sorted(out, key=lambda item: (_SPLIT_ORDER.get(item[0], 3), item[1]))


def split_of_file(rel: str) -> str | None:
    """The split a challenge file name states ('..._Training_GroundTruth.csv' -> 'train')."""
    match = re.search(r"_(Training|Validation|Test_v2|Test)_", rel.rsplit("/", 1)[-1], re.IGNORECASE)
    return split_from_name(match.group(1)) if match else None


def _train_first(dirs: list[tuple[str, str]]) -> str | None:
    return dirs[0][1] if dirs else None


def _merge(base: Labels, **changes) -> Labels:
    data = base.to_dict()
    for key, value in changes.items():
        if value:
            data[key] = list(value) if key == "attributes" else value
    return Labels.from_dict(data)


def _join_task3_labels(
    tree: Tree, candidates: list[Candidate], problems: list[Problem] | None = None
) -> list[LabelFile]:
    """Join Task 3 one-hot ground truth, lesion groupings and HAM10000 metadata found beside the images.

    With ``problems``, Task 3 rows naming no image are reported (the CSV is then the layout's own).
    """
    files: list[LabelFile] = []
    by_id = {c.id: c for c in candidates}
    for rel in tree.find_files(r"ISIC2018_Task3_\w+_GroundTruth\.csv"):
        labels, raw, key, header = labels_by_id(tree.path(rel))
        files.append(LabelFile(rel, "isic2018_task3", key or "image", tuple(header), split_of_file(rel)))
        for image_id, found in labels.items():
            if image_id in by_id:
                by_id[image_id].labels = _merge(by_id[image_id].labels, diagnosis=found.diagnosis)
                by_id[image_id].source.setdefault("label_rows", {})[rel] = raw[image_id]
            elif problems is not None:
                problems.append(
                    Problem("orphan_label", str(tree.path(rel)), f"label row for {image_id}, but no such image")
                )
    for rel in tree.find_files(r"ISIC2018_Task3_\w+_LesionGroupings\.csv|HAM10000_metadata(\.csv|\.tab)?"):
        labels, raw, key, header = labels_by_id(tree.path(rel))
        for image_id, found in labels.items():
            c = by_id.get(image_id)
            if c is None:
                continue
            extra = dict(c.labels.extra) | dict(found.extra)
            c.labels = _merge(
                c.labels,
                diagnosis=c.labels.diagnosis or found.diagnosis,
                site=found.site,
                age=found.age,
                sex=found.sex,
                extra=extra,
            )
            c.source.setdefault("label_rows", {})[rel] = raw[image_id]
    return files


def detect_isic2018_task1(tree: Tree) -> bool:
    return bool(tree.find_dirs(r"ISIC2018_Task1-2_\w+_Input"))


def read_isic2018_task1(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    image_dirs = split_dirs(tree, rf"ISIC2018_Task1-2_{_S}_Input")
    mask_dirs = split_dirs(tree, rf"ISIC2018_Task1_{_S}_GroundTruth")
    masks = [m for _, rel in mask_dirs for m in tree.image_files(rel)]
    images_by_split = [(split, tree.image_files(rel)) for split, rel in image_dirs]
    candidates: list[Candidate] = []
    all_images = [(split, img) for split, imgs in images_by_split for img in imgs]
    paired = pair([img for _, img in all_images], masks, None, problems)
    for (split, _), c in zip(all_images, paired):
        c.split = split
        candidates.append(c)
    # Task 2: five attribute masks per image; an attribute is present when its mask is non-empty.
    task2 = split_dirs(tree, rf"ISIC2018_Task2_{_S}_GroundTruth(_v\d+)?")
    by_id = {c.id: c for c in candidates}
    rx = re.compile(r"(?i)(ISIC_\d+)_attribute_(\w+)")
    for _, rel in task2:
        for path in tree.image_files(rel):
            match = rx.fullmatch(path.stem)
            if not match or match.group(1) not in by_id:
                continue
            c = by_id[match.group(1)]
            attribute = match.group(2).lower()
            c.source.setdefault("attribute_masks", {})[attribute] = str(path)
            try:
                present = mask_has_foreground(path)
            except DatasetError as exc:
                problems.append(Problem("corrupt", str(path), exc.message, sample_id=c.id))
                continue
            if present:
                c.labels = _merge(c.labels, attributes=c.labels.attributes + (attribute,))
    label_files = _join_task3_labels(tree, candidates)
    spec = _layout_spec(
        "isic2018_task1", image_dirs, [img for _, img in all_images], masks, _train_first(mask_dirs),
        "_segmentation.png", label_files,
        attribute_template=f"{_train_first(task2)}/{{id}}_attribute_{{attribute}}.png" if task2 else None,
    )
    return LayoutRead("isic2018_task1", candidates, spec, problems)


def detect_isic2018_task3(tree: Tree) -> bool:
    return bool(tree.find_dirs(r"ISIC2018_Task3_\w+_Input"))


def read_isic2018_task3(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    image_dirs = split_dirs(tree, rf"ISIC2018_Task3_{_S}_Input")
    mask_dirs = tree.find_dirs(r"HAM10000_segmentations_lesion_tschandl")
    mask_rel = tree.unwrap(mask_dirs[0]) if mask_dirs else None
    masks = tree.image_files(mask_rel) if mask_rel else []
    all_images = [(split, img) for split, rel in image_dirs for img in tree.image_files(rel)]
    candidates = pair([img for _, img in all_images], masks, None, problems)
    for (split, _), c in zip(all_images, candidates):
        c.split = split
    label_files = _join_task3_labels(tree, candidates, problems)
    spec = _layout_spec(
        "isic2018_task3", image_dirs, [img for _, img in all_images], masks, mask_rel, "_segmentation.png", label_files
    )
    return LayoutRead("isic2018_task3", candidates, spec, problems)


def rasterise_features(features_json: str | Path, superpixels_png: str | Path) -> dict[str, np.ndarray]:
    """ISIC 2017 Part 2: one bool (H, W) mask per attribute from a features JSON and its superpixels.

    The superpixel PNG is an RGB label map decoded as ``R + (G << 8) + (B << 16)``; an attribute mask
    is ``np.isin(labels, np.flatnonzero(values))`` (DATASETS.md).
    """
    values = json.loads(Path(features_json).read_text())
    rgb = read_image(superpixels_png).astype(np.int64)
    label_map = rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)
    return {name: np.isin(label_map, np.flatnonzero(np.asarray(v))) for name, v in values.items()}


def detect_isic2017(tree: Tree) -> bool:
    return bool(tree.find_dirs(r"ISIC-2017_\w+_Data"))


def read_isic2017(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    image_dirs = split_dirs(tree, rf"ISIC-2017_{_S}_Data")
    mask_dirs = split_dirs(tree, rf"ISIC-2017_{_S}_Part1_GroundTruth")
    part2_dirs = split_dirs(tree, rf"ISIC-2017_{_S}_Part2_GroundTruth")
    masks = [m for _, rel in mask_dirs for m in tree.image_files(rel)]
    all_images = [(split, rel, img) for split, rel in image_dirs for img in tree.image_files(rel)]
    candidates = pair([img for _, _, img in all_images], masks, None, problems)
    by_id = {c.id: c for c in candidates}
    names = {rel: set(tree.files(rel)) for _, rel in image_dirs}
    for (split, rel, image), c in zip(all_images, candidates):
        c.split = split
        if f"{image.stem}_superpixels.png" in names[rel]:
            c.source["superpixels"] = str(image.with_name(f"{image.stem}_superpixels.png"))
    # Part 2: an attribute is present when any of its superpixels is flagged (its rasterised mask is
    # then non-empty, since the JSON has one entry per superpixel of the map).
    for _, rel in part2_dirs:
        for name in tree.files(rel):
            match = re.fullmatch(r"(?i)(ISIC_\d+)_features\.json", name)
            if not match or match.group(1) not in by_id:
                continue
            c = by_id[match.group(1)]
            path = tree.path(rel) / name
            c.source["features"] = str(path)
            try:
                values = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                problems.append(Problem("corrupt", str(path), f"unreadable features JSON ({exc})", sample_id=c.id))
                continue
            present = [a for a in PART2_ATTRIBUTES if any(float(v) > 0 for v in values.get(a, ()))]
            c.labels = _merge(c.labels, attributes=c.labels.attributes + tuple(present))
    label_files: list[LabelFile] = []
    for rel in tree.find_files(r"ISIC-2017_\w+_Part3_GroundTruth\.csv"):
        labels, raw, key, header = labels_by_id(tree.path(rel))
        label_files.append(LabelFile(rel, "isic2017_part3", key or "image_id", tuple(header), split_of_file(rel)))
        for c in candidates:
            if c.id in labels:
                c.labels = _merge(c.labels, diagnosis=labels[c.id].diagnosis)
                c.source.setdefault("label_rows", {})[rel] = raw[c.id]
        attach_labels([], {k: v for k, v in labels.items() if k not in by_id}, tree.path(rel), problems)
    for rel in tree.find_files(r"ISIC-2017_\w+_Data_metadata\.csv"):
        labels, raw, key, header = labels_by_id(tree.path(rel))
        label_files.append(LabelFile(rel, "isic2017_metadata", key or "image_id", tuple(header), split_of_file(rel)))
        for c in candidates:
            if c.id in labels:
                c.labels = _merge(c.labels, age=labels[c.id].age, sex=labels[c.id].sex)
    spec = _layout_spec(
        "isic2017", image_dirs, [img for _, _, img in all_images], masks, _train_first(mask_dirs),
        "_segmentation.png", label_files,
    )
    return LayoutRead("isic2017", candidates, spec, problems)


def detect_isic2016(tree: Tree) -> bool:
    return bool(tree.find_dirs(r"ISBI2016_ISIC_Part(1|3B)_\w+"))


def read_isic2016(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    image_dirs = split_dirs(tree, rf"ISBI2016_ISIC_Part1_{_S}_Data")
    if image_dirs:
        mask_dirs = split_dirs(tree, rf"ISBI2016_ISIC_Part1_{_S}_GroundTruth")
        masks = [m for _, rel in mask_dirs for m in tree.image_files(rel)]
        all_images = [(split, img) for split, rel in image_dirs for img in tree.image_files(rel)]
        train_masks = _train_first(mask_dirs)
    else:  # Part 3B: images and their masks share a folder
        image_dirs = split_dirs(tree, rf"ISBI2016_ISIC_Part3B_{_S}_Data")
        all_images, masks = [], []
        for split, rel in image_dirs:
            imgs, msks = split_images_and_masks(tree.image_files(rel))
            all_images += [(split, img) for img in imgs]
            masks += msks
        train_masks = _train_first(image_dirs)
    candidates = pair([img for _, img in all_images], masks, None, problems)
    for (split, _), c in zip(all_images, candidates):
        c.split = split
    label_files: list[LabelFile] = []
    for rel in tree.find_files(r"ISBI2016_ISIC_Part3B?_\w+_GroundTruth\.csv"):
        labels = isic2016_labels(tree.path(rel))
        label_files.append(LabelFile(rel, "isic2016_csv", split=split_of_file(rel)))
        attach_labels(candidates, labels, None, problems)
        known = {c.id for c in candidates}
        attach_labels([], {k: v for k, v in labels.items() if k not in known}, tree.path(rel), problems)
    spec = _layout_spec(
        "isic2016", image_dirs, [img for _, img in all_images], masks, train_masks, "_Segmentation.png", label_files
    )
    return LayoutRead("isic2016", candidates, spec, problems)


def _layout_spec(
    layout: str,
    image_dirs: list,
    image_paths: list[Path],
    masks: list[Path],
    mask_dir: str | None,
    default_suffix: str,
    label_files: list,
    attribute_template: str | None = None,
) -> LayoutSpec:
    """Where new pairs go in a challenge layout: the training split's folders, names and label files."""
    train_images = _train_first(image_dirs) or ""
    suffix = mask_suffix_of(masks) if masks else default_suffix
    ext = common_suffix(image_paths)
    return LayoutSpec(
        layout=layout,
        image_dir=train_images,
        mask_dir=mask_dir,
        image_ext=ext,
        mask_suffix=suffix,
        image_template=f"{train_images}/{{id}}{ext}",
        mask_template=f"{mask_dir}/{{id}}{suffix}" if mask_dir else None,
        label_files=tuple(label_files),
        attribute_template=attribute_template,
    )
