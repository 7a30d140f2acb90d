"""A Hugging Face ``imagefolder`` with metadata: ``datasets.load_dataset("imagefolder", data_dir=DIR)``.

    DIR/train/ISIC_0000000.jpg  DIR/train/ISIC_0000000_mask.png  DIR/train/metadata.jsonl
    DIR/validation/...          DIR/test/...

Each split's ``metadata.jsonl`` has one line per sample: ``file_name`` (the image, loaded as the
``image`` column), ``mask_file_name`` (the mask, loaded as the ``mask`` column: PNG, 0 background,
1 lesion), ``id``, ``synthetic`` and the labels (``diagnosis``, ``attributes``, ``site``, ``age``,
``sex``). A missing label is an empty string (an age of -1), never null: ``imagefolder`` infers each
split's column types from its own file, and a column that is null all through one split would give
the splits different features, which it refuses. Images are hard links to the folder's own files
where the filesystem allows (else copies).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lesionaug.atomic_files import link_or_copy, write_text_atomic
from lesionaug.datalist.selection import Selection
from lesionaug.dataset.files import read_mask
from lesionaug.dataset.index import Sample
from lesionaug.formats import HF_METADATA_NAME
from lesionaug.progress import SILENT, Reporter

HF_SPLITS = ("train", "validation", "test")
MISSING_AGE = -1


def metadata_line(sample: Sample, image_name: str, mask_name: str) -> dict:
    labels = sample.labels
    return {
        "file_name": image_name,
        "mask_file_name": mask_name,
        "id": sample.id,
        "synthetic": sample.synthetic,
        "diagnosis": labels.diagnosis or "",
        "attributes": list(labels.attributes),
        "site": labels.site or "",
        "age": MISSING_AGE if labels.age is None else labels.age,
        "sex": labels.sex or "",
    }


def write_sample(sample: Sample, folder: Path) -> dict:
    image_name = f"{sample.id}{sample.image.suffix.lower()}"
    mask_name = f"{sample.id}_mask.png"
    link_or_copy(sample.image, folder / image_name)
    Image.fromarray(read_mask(sample.mask).astype(np.uint8), "L").save(folder / mask_name)
    return metadata_line(sample, image_name, mask_name)


def write_hf(selection: Selection, tmp: Path, reporter: Reporter = SILENT) -> Path:
    """One folder per split with its images, masks and metadata.jsonl; returns the data_dir."""
    lists = dict(zip(HF_SPLITS, (selection.training, selection.validation, selection.test)))
    total = sum(len(samples) for samples in lists.values())
    with reporter.task("writing the imagefolder", total=total) as task:
        for split, samples in lists.items():
            if not samples:
                continue
            folder = tmp / split
            folder.mkdir(parents=True, exist_ok=True)
            lines = []
            for sample in samples:
                lines.append(json.dumps(write_sample(sample, folder), ensure_ascii=False))
                task.advance()
            write_text_atomic(folder / HF_METADATA_NAME, "\n".join(lines) + "\n")
    return tmp
