"""An nnU-Net v2 raw dataset: ``imagesTr/ labelsTr/ imagesTs/ labelsTs/ dataset.json``.

nnU-Net's convention for 2D natural images (its ``Dataset120_RoadSegmentation`` example): each case
is one RGB PNG named ``<case>_0000.png`` with ``channel_names`` ``{"0": "R", "1": "G", "2": "B"}``,
its segmentation ``<case>.png`` holds 0 (background) and 1 (lesion), and one ``file_ending``,
``.png``, serves both (lossless: no JPEG). The case id is the sample id, so ``lesionaug score``
pairs nnU-Net's predictions with the real test masks by id.

``imagesTr`` holds the training list and the validation list; ``splits_final.json`` makes them one
fold (fold 0: train = the training list, val = the validation list). nnU-Net reads it from
``nnUNet_preprocessed/DatasetXXX_NAME/``: copy it there after ``nnUNetv2_plan_and_preprocess`` to
train on exactly this split (without it nnU-Net draws its own 5 folds over imagesTr). ``imagesTs``
and ``labelsTs`` hold the real test split (nnU-Net itself does not read them).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from lesionaug.atomic_files import write_text_atomic
from lesionaug.datalist.selection import Selection
from lesionaug.dataset.files import read_image, read_mask
from lesionaug.dataset.index import Sample
from lesionaug.formats import NNUNET_DATASET_JSON, NNUNET_SPLITS_NAME
from lesionaug.progress import SILENT, Reporter

CHANNEL_NAMES = {"0": "R", "1": "G", "2": "B"}
NNUNET_LABELS = {"background": 0, "lesion": 1}
FILE_ENDING = ".png"
PNG_LEVEL = 3  # lossless either way; faster to write than the default 6, a few % larger


def write_case(sample: Sample, images: Path, labels: Path) -> None:
    """One case: the image as RGB PNG ``<id>_0000.png``, the mask as 0/1 PNG ``<id>.png``."""
    Image.fromarray(read_image(sample.image), "RGB").save(images / f"{sample.id}_0000{FILE_ENDING}",
                                                          compress_level=PNG_LEVEL)
    mask = read_mask(sample.mask).astype(np.uint8)
    Image.fromarray(mask, "L").save(labels / f"{sample.id}{FILE_ENDING}", compress_level=PNG_LEVEL)


def dataset_json(selection: Selection, name: str) -> dict:
    n_train = len(selection.training) + len(selection.validation)
    return {
        "name": name,
        "description": "written by lesionaug datalist",
        "channel_names": CHANNEL_NAMES,
        "labels": NNUNET_LABELS,
        "numTraining": n_train,
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "NaturalImage2DIO",
        "lesionaug": {
            "synthetic_cases": [s.id for s in selection.synthetic],
            "validation_cases": [s.id for s in selection.validation],
        },
    }


def write_nnunet(selection: Selection, tmp: Path, name: str, reporter: Reporter = SILENT, workers: int = 4) -> Path:
    """Convert every case into ``tmp`` (the dataset folder being written); returns its dataset.json."""
    folders = {key: tmp / key for key in ("imagesTr", "labelsTr", "imagesTs", "labelsTs")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    jobs = [(s, folders["imagesTr"], folders["labelsTr"]) for s in selection.training + selection.validation]
    jobs += [(s, folders["imagesTs"], folders["labelsTs"]) for s in selection.test]
    with reporter.task("writing nnU-Net cases", total=len(jobs)) as task, ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda job: write_case(*job), jobs):
            task.advance()
    splits = [{"train": [s.id for s in selection.training], "val": [s.id for s in selection.validation]}]
    write_text_atomic(tmp / NNUNET_SPLITS_NAME, json.dumps(splits, indent=1) + "\n")
    write_text_atomic(tmp / NNUNET_DATASET_JSON, json.dumps(dataset_json(selection, name), indent=1) + "\n")
    return tmp / NNUNET_DATASET_JSON
