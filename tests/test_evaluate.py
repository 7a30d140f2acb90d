"""`lesionaug evaluate`: end to end on a tiny dataset, the leakage refusal, the statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from evaluation_fixtures import (
    write_augmented_folder,
    write_blob_dataset,
    write_model_card,
)
from typer.testing import CliRunner

from lesionaug.cli._app import app
from lesionaug.errors import ConfigError
from lesionaug.evaluate.run import (
    EvaluateConfig,
    paired_summary,
    repeat_seeds,
    subsample,
    summarise,
)
from lesionaug.output.synthetic_pairs import check_no_leakage, read_synthetic_source

runner = CliRunner()
TINY = ["--image-size", "32", "--channels", "8,16,32", "--batch-size", "8", "--device", "cpu"]
RESULT_KEYS = {"synthetic_count", "repeats", "dice_mean", "dice_std", "jaccard_mean", "delta_vs_real", "delta_ci95"}


@pytest.fixture()
def world(tmp_path: Path, demo_isic2018: Path) -> dict:
    """The demo dataset (14 train, 4 val, 6 test), a generator card trained on its training split,
    and an augmented folder with 8 synthetic pairs."""
    from lesionaug.dataset.index import load_dataset

    index = load_dataset(demo_isic2018)
    ids = {split: [s.id for s in index.usable(split)] for split in ("train", "test")}
    model = write_model_card(tmp_path / "model", ids["train"])
    write_augmented_folder(tmp_path / "aug", 8, model)
    return {"root": tmp_path, "data": demo_isic2018, "ids": ids, "model": model}


def _evaluate(world: dict, *extra: str):
    root = world["root"]
    args = ["evaluate", str(world["data"]), "--augmented", str(root / "aug"), "--out", str(root / "report"), "--json"]
    return runner.invoke(app, [*args, *TINY, *extra])


@pytest.mark.slow
def test_end_to_end_json_report_and_plots(world):
    result = _evaluate(world, "--synthetic-counts", "0,4,100", "--repeats", "2", "--epochs", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert set(data) >= {"results", "report"}
    assert [r["synthetic_count"] for r in data["results"]] == [0, 4, 8]  # 100 is capped at the 8 that exist
    for row in data["results"]:
        assert RESULT_KEYS <= set(row)
        assert row["repeats"] == 2 and 0.0 <= row["dice_mean"] <= 1.0
    baseline, *augmented = data["results"]
    assert baseline["delta_vs_real"] == 0.0 and baseline["delta_ci95"] is None
    for row in augmented:
        low, high = row["delta_ci95"]
        assert low <= row["delta_vs_real"] <= high
        assert row["delta_vs_real"] == pytest.approx(row["dice_mean"] - baseline["dice_mean"])
    assert any("capped" in note for note in data["notes"])

    report_dir = Path(data["report"]).parent
    for name in ("report.json", "report.md", "dice_vs_synthetic.png", "synthetic_grid.png", "mask_realism.png"):
        assert (report_dir / name).is_file(), name
        if name.endswith(".png"):
            assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((report_dir / "report.json").read_text())
    section = report["sections"]["evaluate"]
    assert section["setup"]["real_test"] == 6 and section["setup"]["real_train"] == 14
    # Every segmenter, real-only included, takes 3 epochs of the largest set: 14 real + 8 synthetic.
    assert section["setup"]["steps_per_segmenter"] == 3 * math.ceil((14 + 8) / 8)
    assert len(section["runs"]) == 6  # 3 counts x 2 seeds
    assert set(section["synthetic_ids"]).isdisjoint(world["ids"]["test"])
    markdown = (report_dir / "report.md").read_text()
    assert "| 8 | 2 |" in markdown and "](dice_vs_synthetic.png)" in markdown
    assert "the same 9 optimizer steps" in markdown


def test_every_segmenter_of_an_evaluation_gets_the_same_step_budget():
    from lesionaug.evaluate.run import training_steps
    from lesionaug.evaluate.segmenter import SegmenterConfig

    assert training_steps(SegmenterConfig(epochs=20, batch_size=8), 16 + 200) == 20 * 27
    assert training_steps(SegmenterConfig(epochs=20, batch_size=8, steps=100), 16 + 200) == 100


def test_real_fraction_subsamples_the_training_split(world):
    result = _evaluate(world, "--synthetic-counts", "0", "--repeats", "1", "--epochs", "1", "--real-fraction", "0.25")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["setup"]["real_train"] == 4  # ceil(0.25 * 14)
    assert data["results"][0]["delta_ci95"] is None


def test_refuses_a_generator_trained_on_a_test_image(world):
    write_model_card(world["model"], world["ids"]["train"] + [world["ids"]["test"][2]])
    result = _evaluate(world, "--synthetic-counts", "0,4", "--repeats", "1", "--epochs", "1", "--quiet")
    assert result.exit_code == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "test split" in lines[0] and world["ids"]["test"][2] in lines[0]
    assert not (world["root"] / "report").exists()  # refused before any training


def test_unknown_provenance_is_refused_unless_allowed(tmp_path):
    write_blob_dataset(tmp_path / "data", n_train=4, n_test=2)
    write_augmented_folder(tmp_path / "aug", 2, model_dir=None)  # no run record
    args = ["evaluate", str(tmp_path / "data"), "--augmented", str(tmp_path / "aug"), "--out", str(tmp_path / "r")]
    args += [*TINY, "--synthetic-counts", "0,2", "--repeats", "1", "--epochs", "1"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 3
    assert "--allow-unknown-provenance" in refused.stderr and "lesionaug-run.json is missing" in refused.stderr
    allowed = runner.invoke(app, [*args, "--allow-unknown-provenance"])
    assert allowed.exit_code == 0, allowed.output


def test_missing_manifest_and_bad_options_exit_with_one_line(world, tmp_path):
    (world["root"] / "aug" / "lesionaug-manifest.jsonl").unlink()
    result = _evaluate(world, "--synthetic-counts", "0,4")
    assert result.exit_code == 3 and "lesionaug-manifest.jsonl" in result.stderr
    bad = _evaluate(world, "--synthetic-counts", "0,a lot")
    assert bad.exit_code == 2 and "--synthetic-counts" in bad.stderr


def test_provenance_found_in_the_run_record_itself(tmp_path):
    write_augmented_folder(tmp_path / "aug", 1, model_dir=None)
    from lesionaug.output.run_record import write_run_record

    write_run_record(tmp_path / "aug", {"model": {"lesionaug": {"train_ids": ["a", "b"], "split_fingerprint": "x"}}})
    source = read_synthetic_source(tmp_path / "aug")
    assert source.train_ids == {"a", "b"} and source.split_fingerprint == "x"
    assert "include no test image" in check_no_leakage(source, ["c"], allow_unknown=False)
    with pytest.raises(ConfigError, match="1 image"):
        check_no_leakage(source, ["b", "c"], allow_unknown=False)


def test_paired_t_interval_by_hand():
    # differences 0.1, 0.2, 0.3: mean 0.2, sample std 0.1, t(0.975, df=2) = 4.302653;
    # half width = 4.302653 * 0.1 / sqrt(3) = 0.248414
    mean, (low, high) = paired_summary([0.6, 0.7, 0.8], [0.5, 0.5, 0.5])
    assert mean == pytest.approx(0.2)
    assert low == pytest.approx(0.2 - 0.248414, abs=1e-6) and high == pytest.approx(0.2 + 0.248414, abs=1e-6)
    assert paired_summary([0.7], [0.5]) == (pytest.approx(0.2), None)


def test_summary_pairs_by_seed():
    runs = [
        {"synthetic_count": 0, "repeat": 0, "seed": 11, "dice": 0.5, "jaccard": 0.4, "threshold_jaccard": 0.0},
        {"synthetic_count": 0, "repeat": 1, "seed": 12, "dice": 0.7, "jaccard": 0.6, "threshold_jaccard": 0.0},
        {"synthetic_count": 9, "repeat": 1, "seed": 12, "dice": 0.8, "jaccard": 0.7, "threshold_jaccard": 0.7},
        {"synthetic_count": 9, "repeat": 0, "seed": 11, "dice": 0.55, "jaccard": 0.45, "threshold_jaccard": 0.0},
    ]
    base, gain = summarise(runs, [0, 9])
    assert base["dice_mean"] == pytest.approx(0.6) and base["dice_std"] == pytest.approx(math.sqrt(0.02))
    assert gain["delta_vs_real"] == pytest.approx(0.075)  # (0.05 + 0.10) / 2, each seed against itself
    assert gain["jaccard_mean"] == pytest.approx(0.575)


def test_seeds_and_subsample_are_deterministic():
    assert repeat_seeds(0, 3) == repeat_seeds(0, 3) != repeat_seeds(1, 3)
    assert len(set(repeat_seeds(0, 5))) == 5
    items = list(range(20))
    assert subsample(items, 0.3, seed=4) == subsample(items, 0.3, seed=4)
    assert len(subsample(items, 0.3, seed=4)) == 6 and subsample(items, 1.0, seed=4) == items
    assert subsample(items, 0.01, seed=4) and subsample(items, 0.3, seed=4) != subsample(items, 0.3, seed=5)


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"real_fraction": 0.0}, {"synthetic_counts": (-1, 5)}])
def test_config_validation(kwargs, tmp_path):
    with pytest.raises(ConfigError):
        EvaluateConfig(dataset=tmp_path, augmented=tmp_path, **kwargs)
