"""`lesionaug evaluate`: end to end on a tiny dataset, the refusals (test leakage, hidden real data),
the same bytes for the same command, the summary's wiring to the per-image scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from evaluation_fixtures import (
    write_augmented_folder,
    write_blob_dataset,
    write_model_card,
)
from typer.testing import CliRunner

from lesionaug.cli._app import app
from lesionaug.dataset.subsets import RealSubset, choose_real_subset
from lesionaug.errors import ConfigError, UsageError
from lesionaug.evaluate.run import EvaluateConfig, repeat_seeds
from lesionaug.output.run_record import write_run_record
from lesionaug.output.synthetic_pairs import check_no_leakage, read_synthetic_source

runner = CliRunner()
TINY = ["--seg-size", "32", "--seg-channels", "8,16,32", "--seg-batch-size", "8", "--seg-device", "cpu"]
RESULT_KEYS = {
    "synthetic_count", "repeats", "dice_mean", "dice_std", "jaccard_mean", "delta_vs_real", "delta_ci95",
    "delta_bootstrap_ci95", "delta_t_ci95", "p_wilcoxon", "per_diagnosis",
}


@pytest.fixture()
def world(tmp_path: Path, demo_isic2018: Path) -> dict:
    """The demo dataset (14 train, 4 val, 6 test), a generator card trained on its training split,
    and an augmented folder with 8 synthetic pairs."""
    from lesionaug.dataset.index import load_dataset

    # The demo's Task 1 images get their diagnoses from its archive export (Task 3 ids are disjoint).
    labels = demo_isic2018 / "isic_archive_metadata.csv"
    index = load_dataset(demo_isic2018, labels=[labels])
    ids = {split: [s.id for s in index.usable(split)] for split in ("train", "test")}
    model = write_model_card(tmp_path / "model", ids["train"])
    write_augmented_folder(tmp_path / "aug", 8, model)
    return {"root": tmp_path, "data": demo_isic2018, "ids": ids, "model": model, "index": index, "labels": labels}


def _evaluate(world: dict, *extra: str, out: str = "report"):
    root = world["root"]
    args = ["evaluate", str(world["data"]), "--labels", str(world["labels"]), "--augmented", str(root / "aug"),
            "--out", str(root / out), "--json"]
    return runner.invoke(app, [*args, *TINY, *extra])


@pytest.mark.slow
def test_end_to_end_json_report_and_plots(world):
    result = _evaluate(world, "--synthetic-counts", "0,4,100", "--repeats", "2", "--seg-epochs", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert [r["synthetic_count"] for r in data["results"]] == [0, 4, 8]  # 100 is capped at the 8 that exist
    assert any("capped" in note for note in data["notes"])
    report_dir = Path(data["report"]).parent
    section = json.loads((report_dir / "report.json").read_text())["sections"]["evaluate"]
    runs = section["runs"]
    assert len(runs) == 6 and all(len(run["dice_per_image"]) == 6 for run in runs)  # 3 counts x 2 seeds, 6 test images
    for run in runs:  # the macro Dice is the mean of the per-image Dice the statistics use
        assert run["dice"] == pytest.approx(np.mean(run["dice_per_image"]), abs=1e-12)
    baseline, *augmented = data["results"]
    assert baseline["delta_vs_real"] == 0.0 and baseline["delta_ci95"] is None and baseline["p_wilcoxon"] is None
    real_only = np.array([run["dice_per_image"] for run in runs if run["synthetic_count"] == 0])
    for row in augmented:
        assert RESULT_KEYS <= set(row) and row["repeats"] == 2
        with_syn = np.array([run["dice_per_image"] for run in runs if run["synthetic_count"] == row["synthetic_count"]])
        assert row["dice_mean"] == pytest.approx(with_syn.mean(axis=1).mean())
        assert row["delta_vs_real"] == pytest.approx((with_syn - real_only).mean(), abs=1e-12)
        assert row["delta_ci95"] == row["delta_bootstrap_ci95"]
        gains = (with_syn - real_only).mean(axis=0)
        assert row["gain_per_image"] == pytest.approx(gains.tolist(), abs=1e-12)
        assert row["images_better"] == int((gains > 0).sum()) and row["images_worse"] == int((gains < 0).sum())
        assert set(row["per_diagnosis"]) == {t["diagnosis"] for t in section["test_images"]}

    # Every segmenter, real-only included, takes 3 epochs of the largest set: 14 real + 8 synthetic.
    assert section["setup"]["steps_per_segmenter"] == 3 * math.ceil((14 + 8) / 8)
    assert section["setup"]["seg_augment"] == "classic" and section["segmenter"]["augment"] == "classic"
    assert section["setup"]["generator_extra_real_pairs"] == 0
    assert section["real_train_ids"] == world["ids"]["train"]
    assert set(section["synthetic_ids"]).isdisjoint(world["ids"]["test"])
    memorisation = section["memorisation"]
    assert memorisation["n_synthetic"] == 8 and memorisation["copy_retrieval"][1] == 14
    assert {c["synthetic_id"] for c in memorisation["closest"]} <= set(section["synthetic_ids"])
    for name in ("report.json", "report.md", "timings.json", "dice_vs_synthetic.png", "per_image_dice.png",
                 "synthetic_grid.png", "memorisation.png", "mask_realism.png"):
        assert (report_dir / name).is_file(), name
    assert len(json.loads((report_dir / "timings.json").read_text())["evaluate"]["segmenters"]) == 6
    report = json.loads((report_dir / "report.json").read_text())
    assert report["environment"]["libraries"]["monai"] is not None
    markdown = (report_dir / "report.md").read_text()
    assert "| 8 | 2 |" in markdown and "](dice_vs_synthetic.png)" in markdown and "Wilcoxon" in markdown
    assert "the same 9 optimizer steps" in markdown and "## Machine" in markdown


@pytest.mark.slow
def test_the_same_command_writes_the_same_bytes(world):
    """Same command, same machine: report.json, report.md and every plot identical (timings apart)."""
    digests = []
    for out in ("first", "second"):
        result = _evaluate(world, "--synthetic-counts", "0,4", "--repeats", "2", "--seg-steps", "3", out=out)
        assert result.exit_code == 0, result.output
        folder = world["root"] / out
        digests.append({p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "timings.json"})
    assert set(digests[0]) >= {"report.json", "report.md", "dice_vs_synthetic.png", "synthetic_grid.png"}
    assert digests[0] == digests[1]


@pytest.mark.slow
def test_a_synthetic_share_mixes_the_augmented_segmenters_batches_only(world):
    """--synthetic-share changes how the augmented segmenters draw their batches, not the real-only
    ones (the paired baseline stays the same), and the report says which mixing was used."""
    runs, sections = {}, {}
    for name, extra in (("drawn alike", ()), ("half", ("--synthetic-share", "0.5")),
                        ("half, real finish", ("--synthetic-share", "0.5", "--real-finish", "0.5"))):
        result = _evaluate(world, "--synthetic-counts", "0,8", "--repeats", "1", "--seg-steps", "4", *extra,
                           out=name.replace(" ", "_"))
        assert result.exit_code == 0, result.output
        folder = Path(json.loads(result.stdout)["data"]["report"]).parent
        sections[name] = json.loads((folder / "report.json").read_text())["sections"]["evaluate"]
        sections[name]["markdown"] = (folder / "report.md").read_text()
        runs[name] = {r["synthetic_count"]: r["dice_per_image"] for r in sections[name]["runs"]}
    assert runs["half"][0] == runs["drawn alike"][0]
    assert runs["half"][8] != runs["drawn alike"][8]
    assert sections["half"]["setup"]["synthetic_share"] == 0.5
    assert sections["drawn alike"]["setup"]["synthetic_share"] is None
    assert "50% synthetic and 50% real (--synthetic-share)" in sections["half"]["markdown"]
    assert "in proportion to their numbers" in sections["drawn alike"]["markdown"]
    # --real-finish 0.5: the last 2 of the 4 steps real only; the first 2 are those of "half".
    assert runs["half, real finish"][0] == runs["half"][0]
    assert runs["half, real finish"][8] != runs["half"][8]
    assert sections["half, real finish"]["setup"]["real_finish"] == 0.5
    assert sections["half"]["setup"]["real_finish"] == 0.0
    assert "the last 50% of their steps draw real pairs only (--real-finish)" in sections["half, real finish"]["markdown"]


def test_hidden_real_data_is_refused_with_the_fix(world):
    # --real-fraction 0.25 gives the segmenters 4 of the 14 training pairs; the generator saw all 14.
    result = _evaluate(world, "--synthetic-counts", "0,4", "--repeats", "1", "--seg-steps", "1",
                       "--real-fraction", "0.25", "--quiet")
    assert result.exit_code == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "10 real training pairs the segmenters do not get" in lines[0]
    assert "--real-fraction 0.25" in lines[0] and "lesionaug augment" in lines[0]
    assert "--allow-generator-extra-data" in lines[0]
    assert not (world["root"] / "report").exists()  # refused before any training


def test_allowing_extra_data_says_so_at_the_top_of_the_report(world):
    result = _evaluate(world, "--synthetic-counts", "0", "--repeats", "1", "--seg-steps", "1",
                       "--real-fraction", "0.25", "--allow-generator-extra-data")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["setup"]["real_train"] == 4  # ceil(0.25 * 14)
    assert data["setup"]["generator_extra_real_pairs"] == 10
    markdown = (world["root"] / "report" / "report.md").read_text()
    section = markdown.split("## What the synthetic pairs are worth to a segmenter", 1)[1]
    assert section.lstrip().startswith("> **The generator saw 10 real training pairs the segmenters did not get**")


@pytest.mark.parametrize("option", [("--real-count", "5"), ("--real-fraction", "0.3")])
def test_a_generator_trained_on_the_same_subset_is_clean(world, option):
    subset = RealSubset(count=5) if option[0] == "--real-count" else RealSubset(fraction=0.3)
    chosen = [s.id for s in choose_real_subset(world["index"].usable("train"), subset)]
    assert len(chosen) == 5  # ceil(0.3 * 14) == 5 as well
    write_model_card(world["model"], chosen)
    result = _evaluate(world, "--synthetic-counts", "0", "--repeats", "1", "--seg-steps", "1", *option)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["setup"]["real_train"] == 5 and data["setup"]["generator_extra_real_pairs"] == 0
    assert any(note.startswith("no hidden real data") for note in data["notes"])
    section = json.loads((world["root"] / "report" / "report.json").read_text())["sections"]["evaluate"]
    assert section["real_train_ids"] == chosen


def test_masks_fitted_on_extra_real_pairs_are_hidden_data_too(world):
    """The run record's plan_fitted_ids (the shape model and labels' pairs) count like training ids."""
    train = world["ids"]["train"]
    subset = [s.id for s in choose_real_subset(world["index"].usable("train"), RealSubset(count=5))]
    write_run_record(world["root"] / "aug", {"status": "complete", "train_ids": subset,
                                             "plan_fitted_ids": subset + [next(i for i in train if i not in subset)]})
    result = _evaluate(world, "--synthetic-counts", "0,2", "--repeats", "1", "--seg-steps", "1", "--real-count", "5")
    assert result.exit_code == 3
    assert "1 real training pairs the segmenters do not get" in result.stderr
    assert "generator 0, masks and labels 1" in result.stderr


def test_refuses_a_generator_trained_on_a_test_image(world):
    write_model_card(world["model"], world["ids"]["train"] + [world["ids"]["test"][2]])
    result = _evaluate(world, "--synthetic-counts", "0,4", "--repeats", "1", "--seg-epochs", "1", "--quiet")
    assert result.exit_code == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "test split" in lines[0] and world["ids"]["test"][2] in lines[0]
    assert not (world["root"] / "report").exists()  # refused before any training


def test_unknown_provenance_is_refused_unless_allowed(tmp_path):
    write_blob_dataset(tmp_path / "data", n_train=4, n_test=2)
    write_augmented_folder(tmp_path / "aug", 2, model_dir=None)  # no run record
    args = ["evaluate", str(tmp_path / "data"), "--augmented", str(tmp_path / "aug"), "--out", str(tmp_path / "r")]
    args += [*TINY, "--synthetic-counts", "0,2", "--repeats", "1", "--seg-epochs", "1"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 3
    assert "--allow-unknown-provenance" in refused.stderr and "lesionaug-run.json is missing" in refused.stderr
    allowed = runner.invoke(app, [*args, "--allow-unknown-provenance", "--json"])
    assert allowed.exit_code == 0, allowed.output
    notes = json.loads(allowed.stdout)["data"]["notes"]
    assert any("hidden real data cannot be ruled out" in note for note in notes)


def test_missing_manifest_and_bad_options_exit_with_one_line(world, tmp_path):
    bad = _evaluate(world, "--synthetic-counts", "0,a lot")
    assert bad.exit_code == 2 and "--synthetic-counts" in bad.stderr
    augment = _evaluate(world, "--seg-augment", "mixup")
    assert augment.exit_code == 2 and "--seg-augment" in augment.stderr and "classic" in augment.stderr
    share = _evaluate(world, "--synthetic-share", "1")
    assert share.exit_code == 2 and "--synthetic-share must be between 0 and 1" in share.stderr
    assert len(share.stderr.strip().splitlines()) <= 2 and "Traceback" not in share.stderr
    finish = _evaluate(world, "--real-finish", "0.25")
    assert finish.exit_code == 2 and "--real-finish needs --synthetic-share" in finish.stderr
    assert "--synthetic-share 0.5" in finish.stderr and "Traceback" not in finish.stderr
    both = _evaluate(world, "--real-fraction", "0.5", "--real-count", "3")
    assert both.exit_code == 2 and "--real-count" in both.stderr
    too_many = _evaluate(world, "--real-count", "15", "--allow-generator-extra-data")
    assert too_many.exit_code == 3 and "the training split has 14" in too_many.stderr
    (world["root"] / "aug" / "lesionaug-manifest.jsonl").unlink()
    result = _evaluate(world, "--synthetic-counts", "0,4")
    assert result.exit_code == 3 and "lesionaug-manifest.jsonl" in result.stderr


def test_provenance_found_in_the_run_record_itself(tmp_path):
    write_augmented_folder(tmp_path / "aug", 1, model_dir=None)
    write_run_record(tmp_path / "aug", {"model": {"lesionaug": {"train_ids": ["a", "b"], "split_fingerprint": "x"}},
                                        "plan_fitted_ids": ["a"]})
    source = read_synthetic_source(tmp_path / "aug")
    assert source.train_ids == {"a", "b"} and source.split_fingerprint == "x" and source.plan_ids == {"a"}
    assert "include no test image" in check_no_leakage(source, ["c"], allow_unknown=False)
    with pytest.raises(ConfigError, match="1 image"):
        check_no_leakage(source, ["b", "c"], allow_unknown=False)


def test_every_segmenter_of_an_evaluation_gets_the_same_step_budget():
    from lesionaug.evaluate.run import training_steps
    from lesionaug.evaluate.segmenter import SegmenterConfig

    assert training_steps(SegmenterConfig(epochs=20, batch_size=8), 16 + 200) == 20 * 27
    assert training_steps(SegmenterConfig(epochs=20, batch_size=8, steps=100), 16 + 200) == 100


def test_repeat_seeds_come_from_the_master_seed_and_the_repeat_index():
    # repeat r's seed is the first word of SeedSequence([seed, r]), so repeats are independent of their count
    assert repeat_seeds(0, 3) == [int(np.random.SeedSequence([0, r]).generate_state(1)[0]) for r in range(3)]
    assert repeat_seeds(0, 5)[:3] == repeat_seeds(0, 3) and repeat_seeds(1, 1) != repeat_seeds(0, 1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"repeats": 0}, UsageError), ({"real_fraction": 0.0}, UsageError), ({"synthetic_counts": (-1, 5)}, UsageError),
     ({"real_count": 0}, UsageError), ({"real_count": 4, "real_fraction": 0.5}, UsageError)],
)
def test_config_validation(kwargs, error, tmp_path):
    with pytest.raises(error):
        EvaluateConfig(dataset=tmp_path, augmented=tmp_path, **kwargs)


def test_the_real_subset_uses_the_split_seed(tmp_path):
    config = EvaluateConfig(dataset=tmp_path, augmented=tmp_path, real_count=16, split_seed=7, seed=3)
    assert config.real_subset() == RealSubset(count=16, seed=7)
    assert EvaluateConfig(dataset=tmp_path, augmented=tmp_path).real_subset() is None
