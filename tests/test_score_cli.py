"""`lesionaug score`: pairing across naming conventions, 0/1 masks, problems, the JSON data, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lesionaug.cli._app import app
from lesionaug.errors import DatasetError
from lesionaug.evaluate.metrics import METRIC_NAMES, score_masks
from lesionaug.evaluate.scoring import mask_id, score_folders

runner = CliRunner()


def _save(path: Path, mask: np.ndarray, *, scale: int = 255, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * scale).convert(mode).save(path)


def _square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ISIC_0012345_segmentation.png", "isic_0012345"),
        ("ISIC_0012345.png", "isic_0012345"),
        ("pred_ISIC_0012345_v2.png", "isic_0012345"),
        ("IMD003_lesion.bmp", "imd003"),
        ("case7_Segmentation.png", "case7"),
        ("Case7_pred_mask.png", "case7"),
        ("case7-GT.png", "case7"),
        ("mask.png", "mask"),
    ],
)
def test_mask_id_across_naming_conventions(name, expected):
    assert mask_id(Path(name)) == expected


def test_pairs_isic_and_generic_names_and_reads_01_masks(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    a_truth = _square(20, 30, 0, 10, 0, 10)  # 100 px
    a_pred = _square(20, 30, 0, 10, 5, 15)  # 100 px, 50 overlap: J = 50/150, Dice = 100/200
    _save(truth / "ISIC_0000001_segmentation.png", a_truth)
    _save(pred / "nested" / "ISIC_0000001.png", a_pred, scale=1)  # a 0/1 mask: must not read as empty
    b = _square(16, 16, 4, 12, 4, 12)
    _save(truth / "lesion_b_mask.png", b)
    _save(pred / "LESION_B_pred.png", b)
    _save(pred / "orphan_pred.png", b)

    report = score_folders(truth, pred)
    data = report.to_dict()
    assert [row["id"] for row in data["per_image"]] == ["ISIC_0000001", "lesion_b"]
    first = data["per_image"][0]
    assert first["jaccard"] == pytest.approx(1 / 3)
    assert first["dice"] == pytest.approx(0.5)
    assert data["per_image"][1]["dice"] == 1.0
    assert data["macro"]["dice"] == pytest.approx(0.75)
    assert data["macro"]["threshold_jaccard"] == pytest.approx(0.5)  # 0 (J 1/3 < 0.65) and 1
    assert [u["path"].endswith("orphan_pred.png") for u in data["unmatched"]] == [True]


def test_size_mismatch_is_a_problem_not_a_crash(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _save(truth / "a.png", _square(10, 10, 0, 5, 0, 5))
    _save(pred / "a.png", _square(12, 10, 0, 5, 0, 5))
    _save(truth / "b.png", _square(10, 10, 0, 5, 0, 5))
    _save(pred / "b.png", _square(10, 10, 0, 5, 0, 5))
    report = score_folders(truth, pred)
    assert [row.id for row in report.per_image] == ["b"]
    assert report.problems[0]["id"] == "a" and "size differs" in report.problems[0]["reason"]


def test_agrees_with_the_official_directory_scorer_on_isic_files(tmp_path):
    segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
    rng = np.random.default_rng(3)
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for k in range(6):
        t = rng.random((24, 32)) < rng.uniform(0.05, 0.6)
        p = t ^ (rng.random((24, 32)) < rng.uniform(0.0, 0.3))
        # The official scorer needs 0/255 L masks named by ISIC id (it reads 0/1 masks as empty).
        _save(truth / f"ISIC_000000{k}_segmentation.png", t)
        _save(pred / f"ISIC_000000{k}_segmentation.png", p)
    ours = score_folders(truth, pred).macro.to_dict()
    theirs = segmentation.SegmentationScore.from_dir(truth, pred).macro_average
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(float(theirs[name]), abs=1e-12), name


def test_cli_json_data_keys(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    t = _square(8, 8, 0, 4, 0, 8)
    p = _square(8, 8, 0, 4, 0, 4)
    _save(truth / "x_gt.png", t)
    _save(pred / "x_prediction.png", p, scale=1)
    result = runner.invoke(app, ["score", str(truth), str(pred), "--json"])
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "ok" and envelope["command"] == "score"
    data = envelope["data"]
    assert set(data) == {"macro", "per_image", "unmatched", "problems"}
    assert set(data["macro"]) == set(METRIC_NAMES)
    assert set(data["per_image"][0]) == {"id", *METRIC_NAMES}
    expected = score_masks(t, p)  # TP 16, FN 16, FP 0, TN 32
    assert data["macro"]["sensitivity"] == pytest.approx(expected.sensitivity) == pytest.approx(0.5)


def test_cli_human_output_is_a_table(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _save(truth / "x.png", _square(8, 8, 0, 4, 0, 8))
    _save(pred / "x.png", _square(8, 8, 0, 4, 0, 8))
    result = runner.invoke(app, ["score", str(truth), str(pred), "--per-image"])
    assert result.exit_code == 0, result.output
    assert "macro average" in result.stdout and "1.0000" in result.stdout


@pytest.mark.parametrize("case", ["missing", "empty", "no_pairs"])
def test_bad_input_exits_3_with_one_line(tmp_path, case):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    if case != "missing":
        truth.mkdir()
        pred.mkdir()
    if case == "no_pairs":
        _save(truth / "a.png", _square(4, 4, 0, 2, 0, 2))
        _save(pred / "b.png", _square(4, 4, 0, 2, 0, 2))
    result = runner.invoke(app, ["score", str(truth), str(pred)])
    assert result.exit_code == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lesionaug score: error:")
    with pytest.raises(DatasetError):
        score_folders(truth, pred)
