"""Reading datasets: layout detection, pairing, labels, splits, fingerprints, mask encodings, problems."""

from __future__ import annotations

import shutil
import zipfile
from collections import Counter
from pathlib import Path

import layout_fixtures as fx
import numpy as np
import pytest
from file_traps import damage
from PIL import Image, ImageFile

from lesionaug.dataset import files as maskio
from lesionaug.dataset.index import LAYOUTS, DatasetIndex, load_dataset, seeded_split
from lesionaug.dataset.label_read import labels_from_row
from lesionaug.dataset.labels import Labels
from lesionaug.dataset.layouts.isic_challenge import rasterise_features
from lesionaug.errors import DatasetError


def _labels_subset(have: dict, want: dict) -> dict:
    """Keys of ``want`` where ``have`` differs (attribute lists compared as sets)."""
    bad = {}
    for key, value in want.items():
        got = have.get(key, [] if key == "attributes" else None)
        if key == "attributes":
            got, value = sorted(got), sorted(value)
        if got != value:
            bad[key] = (value, got)
    return bad


# ----------------------------------------------------------------------------------- every layout


@pytest.mark.parametrize("name", sorted(fx.ALL_WRITERS))
def test_every_layout_is_detected_paired_labelled_and_split(tmp_path: Path, name: str) -> None:
    expected = fx.ALL_WRITERS[name](tmp_path)
    idx = load_dataset(tmp_path)
    assert idx.layout == expected.layout
    assert {s.id for s in idx.samples} == expected.ids
    assert idx.problems == ()
    assert len(idx.usable()) == len(expected.ids)
    if "*" in expected.splits:
        assert idx.split_source == "seeded(seed=0)"
        assert all(s.split == seeded_split(dict(s.labels.extra).get("lesion_id", s.id), 0) for s in idx.samples)
    else:
        assert idx.split_source == "folders"
        for split, ids in expected.splits.items():
            assert {s.id for s in idx.usable(split)} == ids
    for s in idx.samples:
        assert _labels_subset(s.labels.to_dict(), expected.labels.get(s.id, {})) == {}, s.id
        assert s.size == fx.SIZE
        assert s.image.is_file() and s.mask is not None and s.mask.is_file()
    # The spec points at real files of the training split, so a writer can add pairs beside them.
    sample = (idx.usable("train") or idx.usable())[0]
    assert idx.spec.image_path(idx.root, sample.id) == sample.image
    assert idx.spec.mask_path(idx.root, sample.id).parent == sample.mask.parent
    if name != "paired_split":  # that fixture mixes mask suffixes on purpose
        assert idx.spec.mask_path(idx.root, sample.id) == sample.mask


def test_layout_names_follow_the_detector_table_order() -> None:
    assert LAYOUTS == (
        "ph2",
        "isic2018_task1",
        "isic2017",
        "isic2016",
        "ham10000",
        "isic2018_task3",
        "isic_archive",
        "paired_split",
        "paired",
    )


def test_first_match_wins_when_layouts_are_mixed(tmp_path: Path) -> None:
    fx.write_isic2018(tmp_path / "isic", task3=False)
    fx.write_paired(tmp_path / "extra")  # a generic pair of folders beside it must not win
    assert load_dataset(tmp_path).layout == "isic2018_task1"


def test_isic2017_superpixels_are_not_samples_and_features_rasterise(tmp_path: Path) -> None:
    fx.write_isic2017(tmp_path)
    idx = load_dataset(tmp_path)
    assert not any("superpixels" in s.id for s in idx.samples)
    for s in idx.samples:
        masks = rasterise_features(s.source["features"], s.source["superpixels"])
        present = {name for name, m in masks.items() if m.any()}
        assert present == set(s.labels.attributes)
        assert masks["pigment_network"].shape == (fx.SIZE[1], fx.SIZE[0])


def test_isic2018_task2_attribute_masks_are_recorded(tmp_path: Path) -> None:
    fx.write_isic2018(tmp_path)
    idx = load_dataset(tmp_path)
    train = idx.usable("train")[0]
    assert set(train.source["attribute_masks"]) == set(fx_attributes())
    assert idx.spec.attribute_template.endswith("{id}_attribute_{attribute}.png")
    assert idx.spec.label_file("isic2018_task3").split == "train"


def fx_attributes() -> tuple[str, ...]:
    return ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")


def test_ph2_keeps_empty_cells_and_reads_criteria(tmp_path: Path) -> None:
    fx.write_ph2(tmp_path, n=6)
    idx = load_dataset(tmp_path)
    by_id = {s.id: s for s in idx.samples}
    mel = by_id["IMD008"]  # third case: clinical diagnosis 2
    assert mel.labels.diagnosis == "mel"
    assert dict(mel.labels.extra)["histology"] == "Melanoma"
    assert "histology" not in dict(by_id["IMD002"].labels.extra)  # the empty cell stays empty
    assert dict(by_id["IMD002"].labels.extra)["colours"] == "light-brown,dark-brown"
    assert by_id["IMD002"].source["roi"]
    assert " " in str(mel.image.parent.parent.parent.name)  # 'PH2 Dataset images'


def test_ph2_spreadsheet_is_read_when_the_text_file_is_missing(tmp_path: Path) -> None:
    expected = fx.write_ph2_xlsx_only(tmp_path)
    idx = load_dataset(tmp_path)
    assert {s.id: s.labels.diagnosis for s in idx.samples} == {k: v["diagnosis"] for k, v in expected.labels.items()}
    assert idx.spec.label_files[0].format == "ph2_xlsx"
    assert dict(idx.samples[2].labels.extra) == {"histology": "Melanoma"}


def test_isic2018_task3_without_masks_reports_missing_masks(tmp_path: Path) -> None:
    fx.write_isic2018_task3(tmp_path, ham_masks=False)
    idx = load_dataset(tmp_path)
    assert idx.layout == "isic2018_task3"
    assert idx.usable() == []
    problems = Counter(p.code for p in idx.problems)
    assert problems == {"missing_mask": 6}
    assert "--masks" in idx.problems[0].message


def test_isic_archive_masks_come_from_the_folder_passed(tmp_path: Path) -> None:
    masks = tmp_path / "my-masks"
    fx.write_isic_archive(tmp_path / "download", n=4, masks_dir=masks)
    without = load_dataset(tmp_path / "download")
    assert [p.code for p in without.problems] == ["missing_mask"] * 4
    idx = load_dataset(tmp_path / "download", masks=masks)
    assert len(idx.usable()) == 4
    assert idx.spec.mask_dir == str(masks.resolve())
    assert idx.spec.mask_path(idx.root, idx.samples[0].id) == idx.samples[0].mask
    assert all(s.mask.parent == masks.resolve() for s in idx.samples)
    assert idx.samples[0].source["license"] == "CC-BY-NC"


def test_kaggle_ham_mirror_reads_as_paired_with_one_hot_labels(tmp_path: Path) -> None:
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    lines = ["image," + ",".join(codes)]
    for k in range(4):
        image_id = fx.isic_id(24306 + k)
        fx.write_image(tmp_path / "images" / f"{image_id}.jpg", seed=k)
        fx.write_mask(tmp_path / "masks" / f"{image_id}_segmentation.png", fx.blob(seed=k))
        lines.append(f"{image_id}," + ",".join("1.0" if j == k else "0.0" for j in range(7)))
    (tmp_path / "GroundTruth.csv").write_text("\n".join(lines) + "\n")
    idx = load_dataset(tmp_path)
    assert idx.layout == "paired"
    assert [s.labels.diagnosis for s in sorted(idx.samples, key=lambda s: s.id)] == ["mel", "nv", "bcc", "akiec"]
    assert idx.spec.label_files[0].path == "GroundTruth.csv"


def test_kaggle_ham_duplicate_parts_are_read_once(tmp_path: Path) -> None:
    fx.write_ham10000(tmp_path, n=4)
    shutil.copytree(tmp_path / "HAM10000_images_part_1", tmp_path / "ham10000_images_part_1")
    idx = load_dataset(tmp_path)
    assert len(idx.samples) == 4 and idx.problems == ()


def test_labels_from_rows_of_every_vocabulary() -> None:
    archive = labels_from_row(
        {
            "diagnosis_1": "Malignant",
            "diagnosis_2": "Malignant melanocytic proliferations (Melanoma)",
            "diagnosis_3": "Melanoma, NOS",
            "anatom_site_1": "Head and neck",
            "age_approx": "85",
            "sex": "female",
        }
    )
    assert archive == Labels(diagnosis="mel", site="head and neck", age=85, sex="female")
    legacy = labels_from_row({"diagnosis": "pigmented benign keratosis", "anatom_site_general": "head/neck"})
    assert (legacy.diagnosis, legacy.site) == ("bkl", "head or neck")
    assert (
        labels_from_row({"diagnosis_1": "Benign", "diagnosis_2": "Benign epidermal proliferations"}).diagnosis
        == "benign"
    )
    one_hot = {
        "image": "x",
        "mel": "0.0",
        "nv": "0.0",
        "bcc": "1.0",
        "akiec": "0.0",
        "bkl": "0",
        "df": "0",
        "vasc": "0",
    }
    assert labels_from_row(one_hot).diagnosis == "bcc"
    assert labels_from_row({"melanoma": "0.0", "seborrheic_keratosis": "0.0"}).diagnosis == "nevus"
    ham = labels_from_row({"dx": "akiec", "age": "", "sex": "unknown", "localization": "unknown", "dx_type": "histo"})
    assert ham == Labels(diagnosis="akiec", extra=(("dx_type", "histo"),))
    assert labels_from_row({"benign_malignant": "malignant", "anatom_site_general_challenge": "torso"}).site == "torso"


# ------------------------------------------------------------------------------------------ splits


def test_seeded_split_is_deterministic_and_about_70_10_20() -> None:
    keys = [f"ISIC_{k:07d}" for k in range(3000)]
    counts = Counter(seeded_split(k, 0) for k in keys)
    assert abs(counts["train"] / 3000 - 0.7) < 0.03
    assert abs(counts["val"] / 3000 - 0.1) < 0.02
    assert [seeded_split(k, 0) for k in keys[:50]] == [seeded_split(k, 0) for k in keys[:50]]
    assert [seeded_split(k, 0) for k in keys[:50]] != [seeded_split(k, 1) for k in keys[:50]]


def test_split_seed_is_recorded_and_lesions_stay_together(tmp_path: Path) -> None:
    fx.write_ham10000(tmp_path, n=8)
    a, b = load_dataset(tmp_path, split_seed=0), load_dataset(tmp_path, split_seed=7)
    assert (a.split_source, b.split_source) == ("seeded(seed=0)", "seeded(seed=7)")
    assert a.fingerprint == b.fingerprint  # same content, whatever the split
    lesion_split: dict[str, set[str]] = {}
    for s in b.samples:
        lesion_split.setdefault(dict(s.labels.extra)["lesion_id"], set()).add(s.split)
    assert all(len(splits) == 1 for splits in lesion_split.values())


def test_a_single_split_folder_falls_back_to_a_seeded_split(tmp_path: Path) -> None:
    fx.write_isic2018(tmp_path, n={"Training": 6})
    idx = load_dataset(tmp_path, split_seed=3)
    assert idx.split_source == "seeded(seed=3)"


# ------------------------------------------------------------------------------------- fingerprint


def _flip_pixel(path: Path) -> None:
    im = Image.open(path)
    im.load()
    arr = np.array(im)
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr, im.mode).save(path, format=im.format)


def test_fingerprint_follows_content_only(tmp_path: Path) -> None:
    fx.write_paired_split(tmp_path / "a")
    first = load_dataset(tmp_path / "a")
    assert load_dataset(tmp_path / "a").fingerprint == first.fingerprint
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert load_dataset(tmp_path / "b").fingerprint == first.fingerprint  # a copy is the same data

    _flip_pixel(tmp_path / "b" / "train" / "images" / "case_000.png")
    after_image = load_dataset(tmp_path / "b")
    assert after_image.fingerprint != first.fingerprint

    _flip_pixel(tmp_path / "b" / "train" / "masks" / "case_000.png")
    after_mask = load_dataset(tmp_path / "b")
    assert after_mask.fingerprint not in (first.fingerprint, after_image.fingerprint)

    csv = tmp_path / "b" / "labels.csv"
    csv.write_text(csv.read_text().replace("case_000.png,nv", "case_000.png,mel"))
    assert load_dataset(tmp_path / "b").fingerprint not in (first.fingerprint, after_mask.fingerprint)


def test_subset_fingerprint_is_order_free_and_matches_recomputation(tmp_path: Path) -> None:
    fx.write_paired_split(tmp_path)
    idx = load_dataset(tmp_path)
    train = idx.usable("train")
    assert idx.subset_fingerprint(train) == idx.subset_fingerprint(list(reversed(train)))
    assert idx.subset_fingerprint(train) != idx.subset_fingerprint(idx.usable("test"))
    bare = [type(s)(s.id, s.image, s.mask, s.split, s.labels, s.size) for s in train]  # no stored digest
    assert idx.subset_fingerprint(bare) == idx.subset_fingerprint(train)


def test_indexing_reads_headers_only(tmp_path: Path, monkeypatch) -> None:
    fx.write_paired(tmp_path, n=4)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded while indexing")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    idx = load_dataset(tmp_path)
    assert len(idx.usable()) == 4


# -------------------------------------------------------------------------------------- problems


def _codes(idx: DatasetIndex) -> Counter:
    return Counter(p.code for p in idx.problems)


def test_pairing_problems_are_recorded_and_skipped(tmp_path: Path) -> None:
    fx.write_paired(tmp_path, n=6, labels=True)
    base = tmp_path / "lesions" / "lesions"
    (base / "masks" / "img00_segmentation.png").unlink()  # image without mask
    fx.write_mask(base / "masks" / "ghost_segmentation.png", fx.blob())  # mask without image
    fx.write_mask(base / "masks" / "img01_segmentation.png", fx.blob((10, 10)))  # wrong size
    with open(base / "labels.csv", "a") as fh:
        fh.write("img99,melanoma\n")  # label row without image
    idx = load_dataset(tmp_path)
    assert _codes(idx) == {"missing_mask": 1, "orphan_mask": 1, "size_mismatch": 1, "orphan_label": 1}
    assert {s.id for s in idx.usable()} == {"img02", "img03", "img04", "img05"}
    assert idx.damaged == []
    idx.check()  # warnings only
    with pytest.raises(DatasetError, match="--strict"):
        idx.check(strict=True)


@pytest.mark.parametrize(
    "kind,code",
    [
        ("truncated", "truncated"),
        ("corrupt", "corrupt"),
        ("too_large", "too_large"),
        ("empty_file", "truncated"),
    ],
)
def test_damaged_files_are_problems_that_check_refuses(tmp_path: Path, kind: str, code: str) -> None:
    fx.write_paired(tmp_path, n=3)
    path = damage(tmp_path, kind)
    idx = load_dataset(tmp_path)
    assert [p.code for p in idx.damaged] == [code]
    assert idx.damaged[0].path == str(path)
    assert "img01" not in {s.id for s in idx.usable()}
    with pytest.raises(DatasetError) as err:
        idx.check()
    # The error names the file: whole in the message, and by name in the printed line (which shortens
    # long paths in the middle to stay within a terminal line or two).
    assert code in err.value.one_line() and str(path) in str(err.value) and path.name in err.value.one_line()


def test_unreadable_file_is_a_problem(tmp_path: Path, monkeypatch) -> None:
    fx.write_paired(tmp_path, n=3)
    real = maskio.read_file_bytes

    def deny(path, limit=None):
        if Path(path).name == "img02.jpg":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, limit)

    monkeypatch.setattr(maskio, "read_file_bytes", deny)
    idx = load_dataset(tmp_path)
    assert [(p.code, Path(p.path).name) for p in idx.damaged] == [("unreadable", "img02.jpg")]
    assert "Permission denied" in idx.damaged[0].message


# ----------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_one_line_dataset_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk" / "__MACOSX").mkdir(parents=True)
    (tmp_path / "junk" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with zipfile.ZipFile(tmp_path / "isic.zip", "w") as zf:
        zf.writestr("a.txt", "x")
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "file.jpg": "is a file, not a folder",
        tmp_path / "isic.zip": "is an archive",
        tmp_path / "empty": "is empty",
        tmp_path / "junk": "is empty",
        tmp_path / "notes": "no known dataset layout",
    }
    for path, message in cases.items():
        with pytest.raises(DatasetError, match=message) as err:
            load_dataset(path)
        assert err.value.exit_code == 3 and str(path) in err.value.one_line() and "\n" not in err.value.one_line()
        assert err.value.fix
    with pytest.raises(DatasetError, match="no known dataset layout") as err:
        load_dataset(tmp_path / "notes")
    assert all(name in err.value.message for name in LAYOUTS)
    fx.write_paired(tmp_path / "ok", n=2)
    with pytest.raises(DatasetError, match="masks folder does not exist"):
        load_dataset(tmp_path / "ok", masks=tmp_path / "nope")
