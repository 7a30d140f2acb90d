"""The report folder: sections kept across commands, Markdown from the JSON, PNG plots, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lesionaug.errors import ConfigError
from lesionaug.evaluate import plots as report_plots
from lesionaug.evaluate.report import read_report, write_report
from lesionaug.formats import REPORT_SCHEMA

PNG = b"\x89PNG\r\n\x1a\n"
RESULTS = [
    {"synthetic_count": 0, "repeats": 2, "dice_mean": 0.70, "dice_std": 0.02, "jaccard_mean": 0.55,
     "threshold_jaccard_mean": 0.4, "delta_vs_real": 0.0, "delta_ci95": None, "delta_t_ci95": None,
     "p_wilcoxon": None, "images_better": None, "per_diagnosis": None},
    {"synthetic_count": 200, "repeats": 2, "dice_mean": 0.75, "dice_std": 0.01, "jaccard_mean": 0.6,
     "threshold_jaccard_mean": 0.5, "delta_vs_real": 0.05, "delta_ci95": [0.01, 0.09],
     "delta_t_ci95": [-0.2, 0.3], "p_wilcoxon": 0.0123, "images_better": 15, "images_worse": 9,
     "per_diagnosis": {"mel": {"n_images": 10, "dice_real_only": 0.6, "dice_with_synthetic": 0.7, "delta": 0.1,
                               "bootstrap_ci95": [0.02, 0.18]}}},
]  # fmt: skip
RUNS = [{"synthetic_count": c, "dice": d, "dice_per_image": [d - 0.1, d + 0.1]}
        for c, d in ((0, 0.68), (0, 0.72), (200, 0.74), (200, 0.76))]
MEMORISATION = {
    "feature_space": "F", "copy_retrieval": [16, 16], "synthetic_to_train": {"median": 0.5, "min": 0.25},
    "test_to_train": {"median": 0.4, "min": 0.2}, "synthetic_below_test_5th_percentile": [3, 200],
    "test_5th_percentile": 0.3,
}  # fmt: skip


def _evaluate_section() -> dict:
    return {"setup": {"real_train": 16, "real_fraction": 0.2, "repeats": 2, "real_test": 24,
                      "generator_extra_real_pairs": 56},
            "segmenter": {"arch": "unet", "image_size": 64, "epochs": 20, "augment": "classic"}, "results": RESULTS,
            "notes": ["checked provenance"], "memorisation": MEMORISATION}  # fmt: skip


def test_sections_of_both_commands_are_kept_and_rendered(tmp_path):
    plot = report_plots.dice_vs_synthetic(RESULTS, RUNS, "test")
    write_report(tmp_path, "evaluate", _evaluate_section(), {"dice_vs_synthetic": plot})
    quality = {
        "n": 3,
        "split": "test",
        "size": 32,
        "steps": 2,
        "ssim": {"mean": 0.31, "std": 0.05, "n": 3},
        "mask_fidelity": {"mean": 0.8, "std": 0.1, "n": 3},
        "fid": {"status": "skipped", "message": "skipped: x"},
    }
    path = write_report(tmp_path, "quality", quality, {"quality_distributions": report_plots.distributions(
        {"SSIM": [0.3, 0.31, 0.32]})})  # fmt: skip

    report = json.loads(path.read_text())
    assert report["schema"] == REPORT_SCHEMA and set(report["sections"]) == {"evaluate", "quality"}
    assert report["sections"]["evaluate"]["plots"] == {"dice_vs_synthetic": "dice_vs_synthetic.png"}
    markdown = (tmp_path / "report.md").read_text()
    row = "| 200 | 2 | 0.7500 | 0.0100 | 0.6000 | 0.5000 | +0.0500 | [+0.0100, +0.0900] | [-0.2000, +0.3000] | 0.0123 | 15 / 9 |"
    assert row in markdown
    assert "| 0 | 2 | 0.7000 | 0.0200 | 0.5500 | 0.4000 | +0.0000 | n/a | n/a | n/a |  |" in markdown
    assert "| mel | 10 | 0.6000 | 0.7000 | +0.1000 | [+0.0200, +0.1800] |" in markdown
    assert "(0.2 of the split)" in markdown and "- checked provenance" in markdown
    assert "classic augmentation of real and synthetic pairs alike" in markdown
    section = markdown.split("## What the synthetic pairs are worth to a segmenter\n\n", 1)[1]
    assert section.startswith("> **The generator saw 56 real training pairs the segmenters did not get**")
    assert "Self-check: 16 of 16 training images" in markdown and "3 of 200 synthetic images" in markdown
    assert "| SSIM against the real image | 0.3100 | 0.0500 | 3 |" in markdown and "FID/KID: skipped: x" in markdown
    assert "](dice_vs_synthetic.png)" in markdown
    for name in ("dice_vs_synthetic.png", "quality_distributions.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left

    # A second evaluate run replaces its own section only.
    write_report(tmp_path, "evaluate", {**_evaluate_section(), "results": RESULTS[:1]}, {})
    report = read_report(tmp_path)
    assert len(report["sections"]["evaluate"]["results"]) == 1 and "quality" in report["sections"]


def test_every_plot_is_a_png():
    rng = np.random.default_rng(0)
    mask = rng.random((16, 16)) > 0.5
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    grid = report_plots.triplet_grid([(mask, image, image)] * 2, ("mask", "synthetic", "nearest real"))
    histograms = report_plots.feature_histograms(
        {"area_fraction": rng.random(10), "solidity": rng.random(10)},
        {"area_fraction": rng.random(8), "solidity": np.r_[rng.random(7), np.nan]},
        labels=("real", "synthetic"),
    )
    scatter = report_plots.per_image_scatter(RESULTS, RUNS, ["mel", None])
    distances = report_plots.nearest_distance_histogram(rng.random(20), rng.random(10), 0.1)
    captioned = report_plots.triplet_grid([(mask, image, image)], ("a", "b", "c"), ["SYN_1 / ISIC_2: 0.123"])
    realism = report_plots.image_realism({
        "c2st_accuracy": 0.8, "c2st_std": 0.1, "c2st_fold_accuracies": [0.7, 0.9],
        "reference_c2st_accuracy": None, "reference_c2st_std": None, "reference_c2st_fold_accuracies": [],
        "colour_distances": {"inside": {"L": 3.0, "a": 1.0, "b": None}, "outside": {"L": 1.0, "a": 0.5, "b": 2.0}},
    })  # fmt: skip
    spread = {region: {c: {"real": 4.0, "generated": 1.0, "ratio": 0.25} for c in "Lab"} for region in ("inside", "outside")}
    spread["inside"]["b"] = {"real": None, "generated": None, "ratio": None}
    with_spread = report_plots.image_realism({"c2st_fold_accuracies": [], "colour_distances": {}, "colour_spread": spread})
    assert with_spread.startswith(PNG) and with_spread != realism
    dice = report_plots.dice_vs_synthetic(RESULTS, RUNS, "t")
    plots = (grid, histograms, dice, scatter, distances, captioned, realism)
    for png in plots:
        assert png.startswith(PNG) and len(png) > 1000


def test_a_foreign_report_or_a_file_is_refused(tmp_path):
    (tmp_path / "report.json").write_text('{"something": "else"}')
    with pytest.raises(ConfigError, match="not a lesionaug report"):
        write_report(tmp_path, "evaluate", {}, {})
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        write_report(target, "quality", {}, {})
