"""Datalists that point at the folder's own files: MONAI's decathlon JSON and a plain CSV.

Paths are relative to the datalist's own folder, so ``monai.data.load_decathlon_datalist(path,
data_list_key="training")`` resolves them with its default ``base_dir``; keep the datalist folder and
the dataset folder side by side (or rewrite the datalist) when moving them.

    {"name": ..., "labels": {"0": "background", "1": "lesion"}, "numTraining": 3, "numTest": 1,
     "training":   [{"image": "../isic-augmented/.../ISIC_0000000.jpg", "label": "...", "synthetic": false,
                     "id": "ISIC_0000000"}, ...],
     "validation": [...], "test": [...]}
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from lesionaug.atomic_files import write_text_atomic
from lesionaug.datalist.selection import Selection
from lesionaug.dataset.index import Sample
from lesionaug.formats import CSV_DATALIST_NAME, MONAI_DATALIST_NAME

CSV_COLUMNS = ("id", "split", "synthetic", "image", "mask", "diagnosis", "attributes", "site", "age", "sex",
               "source_lesion_id")
LABEL_NAMES = {"0": "background", "1": "lesion"}


def relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX separators), as the datalist records it."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def monai_item(sample: Sample, base: Path) -> dict:
    return {
        "image": relative(sample.image, base),
        "label": relative(sample.mask, base),
        "synthetic": sample.synthetic,
        "id": sample.id,
    }


def write_monai(selection: Selection, tmp: Path, final: Path, name: str) -> Path:
    """``datalist.json`` in the Medical Segmentation Decathlon layout MONAI reads."""
    data = {
        "name": name,
        "description": "written by lesionaug datalist: real training pairs, then synthetic pairs in job order",
        "tensorImageSize": "2D",
        "labels": LABEL_NAMES,
        "numTraining": len(selection.training),
        "numTest": len(selection.test),
        "training": [monai_item(s, final) for s in selection.training],
        "validation": [monai_item(s, final) for s in selection.validation],
        "test": [monai_item(s, final) for s in selection.test],
    }
    path = tmp / MONAI_DATALIST_NAME
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")
    return final / MONAI_DATALIST_NAME


def csv_row(sample: Sample, split: str, base: Path) -> dict:
    labels = sample.labels
    return {
        "id": sample.id,
        "split": split,
        "synthetic": "1" if sample.synthetic else "0",
        "image": relative(sample.image, base),
        "mask": relative(sample.mask, base),
        "diagnosis": labels.diagnosis or "",
        "attributes": ";".join(labels.attributes),
        "site": labels.site or "",
        "age": "" if labels.age is None else str(labels.age),
        "sex": labels.sex or "",
        "source_lesion_id": dict(labels.extra).get("source_lesion_id", ""),
    }


def write_csv(selection: Selection, tmp: Path, final: Path) -> Path:
    """``datalist.csv``: one row per sample with its split, synthetic flag, paths and labels."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for split, samples in (("train", selection.training), ("val", selection.validation), ("test", selection.test)):
        for sample in samples:
            writer.writerow(csv_row(sample, split, final))
    write_text_atomic(tmp / CSV_DATALIST_NAME, buf.getvalue())
    return final / CSV_DATALIST_NAME
