"""`lesionaug datalist` and `lesionaug.open_dataset`: an augmented folder as a MONAI datalist, an nnU-Net
v2 raw dataset, a Hugging Face imagefolder and a CSV, each loaded back by its own stack's reader."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from augment_runs import augment, invoke, trained_run, tree_digest
from PIL import Image

import lesionaug
from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.labels import Labels
from lesionaug.dataset.subsets import RealSubset, choose_real_subset
from lesionaug.formats import MANIFEST_NAME
from lesionaug.output.manifest import read_manifest

pytestmark = pytest.mark.slow  # the augmented folder comes from the session's tiny trained engine
N_SYNTHETIC = 6


@pytest.fixture(scope="module")
def augmented(tmp_path_factory) -> Path:
    run = trained_run()
    out = tmp_path_factory.mktemp("datalist") / "isic-augmented"
    result = augment(run.dataset, out, "--n", N_SYNTHETIC, "--labels", run.dataset / "isic_archive_metadata.csv")
    assert result.exit_code == 0, result.stderr
    return out


def datalist(folder: Path, fmt: str, out: Path, *args) -> dict:
    result = invoke("datalist", folder, "--format", fmt, "--out", out, *args, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    return result.envelope["data"]


def job_order(folder: Path) -> list[str]:
    return [e["id"] for e in sorted(read_manifest(folder / MANIFEST_NAME), key=lambda e: e["index"])]


def real_training_ids(folder: Path) -> list[str]:
    return [s.id for s in load_dataset(folder).usable("train") if not s.synthetic]


# ------------------------------------------------------------------------------------------------- MONAI


def test_monai_datalist_loads_with_load_decathlon_datalist(augmented: Path, tmp_path: Path) -> None:
    from monai.data import load_decathlon_datalist

    before = tree_digest(augmented)
    data = datalist(augmented, "monai", tmp_path / "lists", "--synthetic", "4", "--real-fraction", "0.5", "--seed", "3")
    path = Path(data["path"])
    assert path == tmp_path / "lists" / "datalist.json"
    training = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key="training")
    validation = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key="validation")
    test = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key="test")
    # The same real subset `evaluate --real-fraction 0.5` trains on (split seed 0), then the first 4 pairs.
    ids = [SimpleNamespace(id=i) for i in real_training_ids(augmented)]
    real = [s.id for s in choose_real_subset(ids, RealSubset(fraction=0.5))]
    assert [item["id"] for item in training] == real + job_order(augmented)[:4]
    assert [item["synthetic"] for item in training] == [False] * len(real) + [True] * 4
    assert not any(item["synthetic"] for item in validation + test)
    dataset = load_dataset(augmented)
    splits = {s.id: s.split for s in dataset.samples}
    assert {splits[i["id"]] for i in validation} == {"val"} and {splits[i["id"]] for i in test} == {"test"}
    for item in training + validation + test:
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()  # resolved against the file
        assert Path(item["image"]).samefile(next(s.image for s in dataset.samples if s.id == item["id"]))
    assert data["counts"]["synthetic"] == 4 and data["counts"]["synthetic_available"] == N_SYNTHETIC
    assert tree_digest(augmented) == before  # the folder is only read


# ----------------------------------------------------------------------------------------------- nnU-Net


def check_nnunet_raw(folder: Path) -> dict:
    """nnU-Net v2's own dataset checks (verify_dataset_integrity), restated for a 2D RGB PNG dataset."""
    meta = json.loads((folder / "dataset.json").read_text())
    assert {"labels", "channel_names", "numTraining", "file_ending"} <= set(meta)
    ending = meta["file_ending"]
    assert ending == ".png"  # lossless
    labels = sorted(meta["labels"].values())
    assert labels == list(range(len(labels))) and meta["labels"]["background"] == 0  # consecutive from 0
    images = sorted(p.name for p in (folder / "imagesTr").iterdir())
    cases = sorted({name[: -len("_0000" + ending)] for name in images})
    assert len(cases) == meta["numTraining"]
    assert images == [f"{c}_0000{ending}" for c in cases]  # one file per case: the RGB image
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}{ending}" for c in cases]
    for case in cases:
        image = Image.open(folder / "imagesTr" / f"{case}_0000{ending}")
        seg = np.asarray(Image.open(folder / "labelsTr" / f"{case}{ending}"))
        assert image.mode == "RGB" and len(image.getbands()) == len(meta["channel_names"])
        assert image.size == (seg.shape[1], seg.shape[0]) and seg.ndim == 2
        assert set(np.unique(seg)) <= set(labels)
    return meta


def test_nnunet_raw_dataset_follows_the_v2_format(augmented: Path, tmp_path: Path) -> None:
    out = tmp_path / "Dataset501_ISIC"
    data = datalist(augmented, "nnunet", out, "--synthetic", "3")
    assert data["notes"] == []  # named DatasetXXX_NAME: nnU-Net finds it
    meta = check_nnunet_raw(out)
    assert meta["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["overwrite_image_reader_writer"] == "NaturalImage2DIO"
    dataset = load_dataset(augmented)
    real = real_training_ids(augmented)
    val = [s.id for s in dataset.usable("val")]
    assert meta["numTraining"] == len(real) + 3 + len(val)
    assert meta["lesionaug"]["synthetic_cases"] == job_order(augmented)[:3]
    splits = json.loads((out / "splits_final.json").read_text())
    assert splits == [{"train": real + job_order(augmented)[:3], "val": val}]
    tests = {s.id: s for s in dataset.usable("test")}
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == sorted(f"{i}_0000.png" for i in tests)
    # Lossless: the PNGs hold the decoded pixels of the folder's own files; labels are its masks as 0/1.
    for sample in [*dataset.synthetic[:1], tests[sorted(tests)[0]]]:
        where = "imagesTr" if sample.synthetic else "imagesTs"
        png = np.asarray(Image.open(out / where / f"{sample.id}_0000.png"))
        assert np.array_equal(png, lesionaug.read_image(sample.image))
        seg = np.asarray(Image.open(out / where.replace("images", "labels") / f"{sample.id}.png"))
        assert np.array_equal(seg, lesionaug.read_mask(sample.mask).astype(np.uint8))


def test_nnunet_own_integrity_check_accepts_it(augmented: Path, tmp_path: Path) -> None:
    pytest.importorskip("nnunetv2", reason="nnunetv2 pulls torchvision; run with it on PYTHONPATH to check")
    from nnunetv2.experiment_planning.verify_dataset_integrity import (
        verify_dataset_integrity,
    )

    out = tmp_path / "Dataset502_ISIC"
    datalist(augmented, "nnunet", out)
    verify_dataset_integrity(str(out), num_processes=1)


def test_an_nnunet_folder_not_named_for_nnunet_gets_a_note(augmented: Path, tmp_path: Path) -> None:
    data = datalist(augmented, "nnunet", tmp_path / "isic-nnunet", "--synthetic", "0")
    assert "DatasetXXX_NAME" in data["notes"][0]
    assert check_nnunet_raw(tmp_path / "isic-nnunet")["lesionaug"]["synthetic_cases"] == []


# ------------------------------------------------------------------------------------ Hugging Face, CSV


def test_hf_imagefolder_loads_with_load_dataset(augmented: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="the Hugging Face datasets package is an optional test dependency")
    out = tmp_path / "hf"
    datalist(augmented, "hf", out)
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "validation", "test"}
    train = loaded["train"]
    assert {"image", "mask", "id", "synthetic", "diagnosis", "attributes"} <= set(train.column_names)
    manifest = {e["id"]: e for e in read_manifest(augmented / MANIFEST_NAME)}
    assert sum(train["synthetic"]) == N_SYNTHETIC
    assert train["id"] == real_training_ids(augmented) + job_order(augmented)
    for row in train:
        mask = np.asarray(row["mask"])
        assert set(np.unique(mask)) <= {0, 1} and mask.shape == np.asarray(row["image"]).shape[:2]
        if row["synthetic"]:
            assert row["diagnosis"] == manifest[row["id"]]["labels"]["diagnosis"]
            assert row["attributes"] == manifest[row["id"]]["labels"].get("attributes", [])
    assert not any(loaded["test"]["synthetic"])


def test_csv_lists_every_sample_with_its_split_flag_and_labels(augmented: Path, tmp_path: Path) -> None:
    data = datalist(augmented, "csv", tmp_path / "csv", "--synthetic", "2")
    with open(data["path"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    dataset = load_dataset(augmented)
    by_id = {s.id: s for s in dataset.samples}
    assert [r["id"] for r in rows if r["synthetic"] == "1"] == job_order(augmented)[:2]
    assert len(rows) == len(dataset.usable()) - (N_SYNTHETIC - 2)
    for row in rows:
        sample = by_id[row["id"]]
        assert row["split"] == sample.split and row["diagnosis"] == (sample.labels.diagnosis or "")
        assert (Path(data["path"]).parent / row["image"]).resolve() == sample.image.resolve()
        if row["synthetic"] == "1":
            assert row["source_lesion_id"] == dict(sample.labels.extra)["source_lesion_id"]


# ----------------------------------------------------------------------------- the folder, the entry point


def test_refusals_and_replacing_an_earlier_datalist(augmented: Path, tmp_path: Path) -> None:
    inside = invoke("datalist", augmented, "--format", "csv", "--out", augmented / "lists", "--json", "-q")
    assert inside.exit_code == 3 and "inside the dataset folder" in inside.envelope["errors"][0]["message"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    foreign = invoke("datalist", augmented, "--format", "csv", "--out", tmp_path / "mine", "--json", "-q")
    assert foreign.exit_code == 3 and (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    bad = invoke("datalist", augmented, "--format", "coco", "--json", "-q")
    assert bad.exit_code == 2 and "'coco' is not one of 'monai', 'nnunet', 'hf', 'csv'" in bad.envelope["errors"][0]["message"]
    first = datalist(augmented, "monai", tmp_path / "again")
    second = datalist(augmented, "csv", tmp_path / "again")  # an earlier datalist is replaced
    assert sorted(os.listdir(tmp_path / "again")) == [".lesionaug-datalist.json", "datalist.csv"]
    assert first["counts"] == second["counts"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    default = invoke("datalist", augmented, "--format", "csv", "--json", "-q")
    assert Path(default.envelope["data"]["out"]) == augmented.with_name("isic-augmented-csv")


def test_a_plain_dataset_folder_has_no_synthetic_pairs(tmp_path: Path) -> None:
    run = trained_run()
    data = datalist(run.dataset, "monai", tmp_path / "plain", "--labels", run.dataset / "isic_archive_metadata.csv")
    listed = json.loads(Path(data["path"]).read_text())
    assert not any(item["synthetic"] for key in ("training", "validation", "test") for item in listed[key])
    assert [item["id"] for item in listed["training"]] == real_training_ids(run.dataset)


def test_open_dataset_returns_samples_with_labels_and_the_synthetic_flag(augmented: Path) -> None:
    samples = lesionaug.open_dataset(augmented)
    manifest = {e["id"]: e for e in read_manifest(augmented / MANIFEST_NAME)}
    synthetic = [s for s in samples if s.synthetic]
    assert sorted(s.id for s in synthetic) == sorted(manifest)
    for s in synthetic:
        assert s.split == "train" and s.labels == Labels.from_dict(manifest[s.id]["labels"])
    real_test = lesionaug.open_dataset(augmented, split="test", synthetic=False)
    assert real_test and all(s.split == "test" and not s.synthetic for s in real_test)
    assert lesionaug.open_dataset(augmented, synthetic=True) == synthetic
    archive = trained_run().dataset / "isic_archive_metadata.csv"
    labelled = lesionaug.open_dataset(augmented, labels=[archive], synthetic=False)
    assert all(s.labels.diagnosis for s in labelled)
    image, mask = lesionaug.read_image(synthetic[0].image), lesionaug.read_mask(synthetic[0].mask)
    assert image.shape[:2] == mask.shape and mask.dtype == bool
