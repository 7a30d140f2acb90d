"""Reader for PH2: one folder per case under ``PH2 Dataset images`` (note the space), BMP image and mask.

PH2Dataset/PH2 Dataset images/IMD003/IMD003_Dermoscopic_Image/IMD003.bmp
                                    /IMD003_lesion/IMD003_lesion.bmp
                                    /IMD003_roi/IMD003_R1_Label4.bmp
PH2Dataset/PH2_dataset.txt
"""

from __future__ import annotations

import re

from lesionaug.layouts.labelrows import ph2_labels
from lesionaug.layouts.pairing import attach_labels, common_suffix
from lesionaug.layouts.records import Candidate, LabelFile, LayoutRead, LayoutSpec, Problem
from lesionaug.layouts.tree import Tree

_CASE = re.compile(r"IMD\d{3,}")


def detect_ph2(tree: Tree) -> bool:
    return bool(tree.find_dirs(r"PH2 Dataset images") or tree.find_dirs(r"IMD\d{3,}_Dermoscopic_Image", max_depth=6))


def _case_parent(tree: Tree) -> str:
    named = tree.find_dirs(r"PH2 Dataset images")
    if named:
        return tree.unwrap(named[0])
    first = tree.find_dirs(r"IMD\d{3,}_Dermoscopic_Image", max_depth=6)[0]
    return first.rsplit("/", 2)[0] if first.count("/") >= 2 else ""


def read_ph2(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    parent = _case_parent(tree)
    candidates: list[Candidate] = []
    for case in sorted(d for d in tree.listings[parent].dirs if _CASE.fullmatch(d)):
        case_rel = f"{parent}/{case}" if parent else case
        images = [p for p in tree.image_files(f"{case_rel}/{case}_Dermoscopic_Image") if p.stem == case]
        masks = [p for p in tree.image_files(f"{case_rel}/{case}_lesion") if p.stem.lower() == f"{case}_lesion".lower()]
        if not images:
            if masks:
                problems.append(
                    Problem("orphan_mask", str(masks[0]), "mask has no dermoscopic image in its case folder")
                )
            continue
        c = Candidate(id=case, image=images[0], mask=masks[0] if masks else None, split=None)
        rois = tree.image_files(f"{case_rel}/{case}_roi")
        if rois:
            c.source["roi"] = [str(p) for p in rois]
        candidates.append(c)
    label_files = []
    texts = tree.find_files(r"PH2_dataset\.txt", max_depth=6)
    if texts:
        rows = ph2_labels(tree.path(texts[0]))
        label_files.append(LabelFile(texts[0], "ph2_txt", "name"))
        attach_labels(candidates, {k: v[0] for k, v in rows.items()}, tree.path(texts[0]), problems)
        for c in candidates:
            if c.id in rows:
                c.source["label_row"] = rows[c.id][1]
    ext = common_suffix([c.image for c in candidates], ".bmp")
    prefix = f"{parent}/" if parent else ""
    spec = LayoutSpec(
        layout="ph2",
        image_dir=parent,
        mask_dir=parent,
        image_ext=ext,
        mask_suffix=f"_lesion{ext}",
        image_template=f"{prefix}{{id}}/{{id}}_Dermoscopic_Image/{{id}}{ext}",
        mask_template=f"{prefix}{{id}}/{{id}}_lesion/{{id}}_lesion{ext}",
        label_files=tuple(label_files),
    )
    return LayoutRead("ph2", candidates, spec, problems)
