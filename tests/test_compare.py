"""`lesionaug compare`: one generator alone reproduces `evaluate`, two are compared pairwise, and a
Pix2PixHD engine gets its quality measured; the --json data and the report's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evaluation_fixtures import write_augmented_folder, write_model_card
from typer.testing import CliRunner

from lesionaug.cli._app import app
from lesionaug.dataset.index import load_dataset
from lesionaug.errors import ConfigError, UsageError
from lesionaug.evaluate.compare import CompareConfig, run_comparison

runner = CliRunner()
TINY = ["--seg-size", "32", "--seg-channels", "8,16,32", "--seg-batch-size", "8", "--seg-device", "cpu", "--seg-epochs", "1",
        "--synthetic-counts", "0,4", "--repeats", "2"]


@pytest.fixture()
def world(tmp_path: Path, demo_isic2018: Path) -> dict:
    labels = demo_isic2018 / "isic_archive_metadata.csv"
    index = load_dataset(demo_isic2018, labels=[labels])
    model = write_model_card(tmp_path / "model", [s.id for s in index.usable("train")])
    write_augmented_folder(tmp_path / "aug-a", 6, model, seed=1)
    write_augmented_folder(tmp_path / "aug-b", 6, model, seed=2)
    return {"root": tmp_path, "data": demo_isic2018, "labels": labels}


def _run(*args):
    return runner.invoke(app, [*map(str, args)])


def test_one_generator_alone_reproduces_evaluate(world):
    root, data, labels = world["root"], world["data"], world["labels"]
    evaluated = _run("evaluate", data, "--labels", labels, "--augmented", root / "aug-a", "--out", root / "ev",
                     "--synthetic-share", "0.5", "--real-finish", "0.25", "--json", *TINY)
    assert evaluated.exit_code == 0, evaluated.output
    compared = _run("compare", data, "--labels", labels, "--augmented", f"a={root / 'aug-a'}", "--out", root / "cmp",
                    "--synthetic-share", "0.5", "--real-finish", "0.25", "--no-quality", "--json", *TINY)
    assert compared.exit_code == 0, compared.output
    expected = json.loads(evaluated.stdout)["data"]
    got = json.loads(compared.stdout)["data"]
    assert set(got) >= {"generators", "pairwise"} and got["pairwise"] == []
    assert got["generators"]["a"]["results"] == expected["results"]
    assert got["setup"]["steps_per_segmenter"] == expected["setup"]["steps_per_segmenter"]
    assert got["setup"]["synthetic_share"] == expected["setup"]["synthetic_share"] == 0.5
    assert got["setup"]["real_finish"] == expected["setup"]["real_finish"] == 0.25
    assert "50% synthetic and 50% real (--synthetic-share); the last 25% of their steps draw real pairs only" in (
        root / "cmp" / "report.md").read_text()


def test_two_generators_are_paired_on_the_same_seeds_and_reported(world):
    root, data, labels = world["root"], world["data"], world["labels"]
    out = root / "cmp2"
    result = _run("compare", data, "--labels", labels, "--augmented", f"a={root / 'aug-a'}",
                  "--augmented", f"b={root / 'aug-b'}", "--out", out, "--no-quality", "--json", *TINY)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)["data"]
    a, b = (got["generators"][n]["results"] for n in ("a", "b"))
    assert a[0] == b[0]  # the real-only row: the same segmenters for both generators
    (pair,) = got["pairwise"]
    assert (pair["a"], pair["b"], pair["synthetic_count"]) == ("a", "b", 4)
    assert pair["delta"] == pytest.approx(a[1]["dice_mean"] - b[1]["dice_mean"])
    assert pair["delta_ci95"] is not None and len(pair["delta_ci95"]) == 2
    report = json.loads((out / "report.json").read_text())["sections"]["compare"]
    assert set(report["generators"]) == {"a", "b"} and (out / "compare_dice.png").is_file()
    markdown = (out / "report.md").read_text()
    assert "## Generators compared" in markdown and "drawn alike, in proportion" in markdown


def test_bad_names_are_usage_errors(world, tmp_path):
    with pytest.raises(UsageError, match="repeat"):
        CompareConfig(world["data"], (("a", tmp_path), ("a", tmp_path)))
    with pytest.raises(ConfigError, match="no measure was passed"):
        run_comparison(CompareConfig(world["data"], (("a", world["root"] / "aug-a"),)))
    result = _run("compare", world["data"], "--augmented", "no-equals-sign")
    assert result.exit_code == 2 and "NAME=DIR" in result.output


def test_quality_of_a_pix2pixhd_engine_goes_into_the_comparison(demo_isic2018, tmp_path):
    pytest.importorskip("onnxruntime")
    from lesionaug.export.run import export_model
    from lesionaug.train.pix2pixhd_config import Pix2PixHDConfig
    from lesionaug.train.pix2pixhd_run import train_pix2pixhd

    config = Pix2PixHDConfig(model_size="tiny", resolution=64, steps=2, batch_size=2, num_samples=2)
    train_pix2pixhd(load_dataset(demo_isic2018), tmp_path / "model", config)
    export_model(tmp_path / "model", tmp_path / "engine")
    augmented = _run("augment", demo_isic2018, "--out", tmp_path / "aug", "--n", "4", "--size", "64",
                     "--model", tmp_path / "engine", "--quiet")
    assert augmented.exit_code == 0, augmented.output
    result = _run("compare", demo_isic2018, "--augmented", f"gan={tmp_path / 'aug'}", "--out", tmp_path / "cmp",
                  "--generated-limit", "3", "--provider", "cpu", "--json", *TINY)
    assert result.exit_code == 0, result.output
    generator = json.loads(result.stdout)["data"]["generators"]["gan"]
    quality = generator["quality"]
    assert quality["status"] == "ok" and quality["ssim"]["n"] == 3 and quality["mask_fidelity"]["n"] == 3
    assert -1 <= quality["ssim"]["mean"] <= 1
    assert (tmp_path / "cmp" / "compare_grid.png").is_file() and (tmp_path / "cmp" / "compare_quality.png").is_file()
