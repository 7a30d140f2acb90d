"""`lesionaug quality`: SSIM by the paper's protocol, mask fidelity, FID/KID, model folders via the cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from exported_engines import exported_engine
from typer.testing import CliRunner

from lesionaug.cli._app import app

runner = CliRunner()
TINY = [
    "--provider", "cpu", "--denoise-steps", "2", "--seg-epochs", "2", "--seg-size", "32",
    "--seg-channels", "8,16,32", "--seg-device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def quality_run(demo_isic2018, tmp_path_factory) -> dict:
    """One quality run on 4 test masks of the demo data (batches of 3 and 1), through the CLI."""
    engine_dir = exported_engine("pixel").engine_dir
    out = tmp_path_factory.mktemp("quality") / "report"
    args = ["quality", str(demo_isic2018), "--model", str(engine_dir), "--limit", "4", "--batch-size", "3"]
    result = runner.invoke(app, [*args, *TINY, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return {"data": json.loads(result.stdout)["data"], "out": out, "engine": engine_dir}


@pytest.mark.slow
def test_quality_end_to_end(quality_run):
    data, out = quality_run["data"], quality_run["out"]
    assert data["n"] == 4 and data["size"] == 32  # the tiny model's training resolution
    section = json.loads((out / "report.json").read_text())["sections"]["quality"]
    assert data["sampler"] == {k: section["config"][k] for k in ("scheduler", "steps", "guidance")}
    rows = section["per_image"]
    # The summaries are the per-image values' mean and std (the SSIM of one row is regenerated below).
    assert data["ssim"]["n"] == 4 and data["ssim"]["mean"] == pytest.approx(np.mean([r["ssim"] for r in rows]))
    assert data["mask_fidelity"]["mean"] == pytest.approx(np.mean([r["fidelity_dice"] for r in rows]))
    assert data["segmenter_on_real"]["mean"] == pytest.approx(np.mean([r["real_dice"] for r in rows]))
    assert data["segmenter_prior"]["n"] == 4  # the floor: the segmenter on a flat skin-coloured image
    assert data["fid"]["status"] == "skipped" and "--fid-weights" in data["fid"]["message"]
    for name in ("report.json", "report.md", "quality_distributions.png", "quality_grid.png"):
        assert (out / name).is_file(), name
    assert "seconds" not in section and "seconds" in json.loads((out / "timings.json").read_text())["quality"]
    assert [row["id"] for row in section["per_image"]] == sorted(row["id"] for row in section["per_image"])
    assert "Image quality and mask fidelity" in (out / "report.md").read_text()


@pytest.mark.slow
def test_ssim_compares_the_image_generated_from_each_mask_with_its_real_image(quality_run, demo_isic2018):
    """Regenerate one image by hand with the recorded prompt and noise seed: same SSIM, bit for bit."""
    from lesionaug.dataset.files import read_image, read_mask
    from lesionaug.dataset.index import load_dataset
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate
    from lesionaug.evaluate.metrics import structural_similarity
    from lesionaug.evaluate.segmenter import square_image as resize_image
    from lesionaug.masks.geometry import resize_mask
    from lesionaug.plan.prompts import build_prompt

    section = json.loads((quality_run["out"] / "report.json").read_text())["sections"]["quality"]
    row = section["per_image"][1]
    sample = next(s for s in load_dataset(demo_isic2018).usable("test") if s.id == row["id"])
    assert row["prompt"] == build_prompt(sample.labels, "a dermoscopic image of {diagnosis} {attributes} {site}")
    mask = resize_mask(read_mask(sample.mask), (32, 32))
    engine = Engine.load(quality_run["engine"], "cpu")
    (image,) = generate(engine, [row["prompt"]], [mask], [row["noise_seed"]], SamplerSettings(steps=2))
    real = resize_image(read_image(sample.image), 32)
    assert structural_similarity(image, real) == row["ssim"]


@pytest.mark.slow
def test_fid_and_kid_with_a_feature_extractor_file(demo_isic2018, tmp_path):
    import torch

    class MeanColour(torch.nn.Module):
        def forward(self, x):
            x = x.float() / 255.0
            return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    weights = tmp_path / "features.pt2"
    example = torch.zeros((2, 3, 32, 32), dtype=torch.uint8)
    program = torch.export.export(MeanColour(), (example,), dynamic_shapes=({0: torch.export.Dim("n")},))
    torch.export.save(program, str(weights))
    args = ["quality", str(demo_isic2018), "--model", str(exported_engine("pixel").engine_dir), "--limit", "4"]
    args += [*TINY, "--no-fidelity", "--fid-weights", str(weights), "--out", str(tmp_path / "r"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["fid"]["status"] == "ok" and np.isfinite(data["fid"]["fid"]) and data["fid"]["fid"] >= 0
    assert data["fid"]["n_real"] == data["fid"]["n_generated"] == 4
    assert data["mask_fidelity"]["n"] == 0 and data["segmenter_on_real"] is None


@pytest.mark.slow
def test_a_model_folder_is_run_through_its_cached_engine(demo_isic2018, tmp_path, monkeypatch):
    """--model MODEL_DIR goes through the cache; its engine is placed there so nothing is re-exported
    (the export itself is tested in test_export.py)."""
    from lesionaug.augment.model_choice import engine_slot, model_hash

    built = exported_engine("pixel")
    card = json.loads((built.model_dir / "lesionaug.json").read_text())
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "engines" / engine_slot(built.model_dir, card, "fp32")
    shutil.copytree(built.engine_dir, cached)
    args = ["quality", str(demo_isic2018), "--model", str(built.model_dir), "--limit", "2", "--no-fidelity"]
    result = runner.invoke(app, [*args, *TINY, "--out", str(tmp_path / "r"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["engine"] == str(cached) and data["n"] == 2
    section = json.loads((tmp_path / "r" / "report.json").read_text())["sections"]["quality"]
    assert section["model_source"] == "cached" and section["model_hash"] == model_hash(card)


def test_bad_split_and_missing_model_exit_with_one_line(demo_isic2018, tmp_path):
    bad_split = runner.invoke(app, ["quality", str(demo_isic2018), "--model", str(tmp_path), "--split", "holdout"])
    assert bad_split.exit_code == 2 and "'holdout' is not one of" in bad_split.stderr
    no_model = runner.invoke(app, ["quality", str(demo_isic2018), "--model", str(tmp_path / "none"), "-q"])
    assert no_model.exit_code == 4
    assert len([line for line in no_model.stderr.splitlines() if line.strip()]) == 1


@pytest.mark.slow
def test_image_realism_is_measured_reported_and_can_be_skipped(quality_run, demo_isic2018, tmp_path):
    realism = quality_run["data"]["image_realism"]
    for key in ("c2st_accuracy", "c2st_std", "reference_c2st_accuracy", "reference_c2st_std"):
        assert key in realism
    # 4 test images: 4 folds of one real and one generated image each; the accuracy is their mean.
    assert realism["c2st_n_per_sample"] == 4 and len(realism["c2st_fold_accuracies"]) == 4
    assert realism["c2st_accuracy"] == pytest.approx(np.mean(realism["c2st_fold_accuracies"]))
    assert set(realism["colour_distances"]) == {"inside", "outside"}
    assert all(set(v) == {"L", "a", "b"} for v in realism["colour_distances"].values())
    spread = realism["colour_spread"]
    assert set(spread) == {"inside", "outside"} and set(spread["outside"]) == {"L", "a", "b"}
    assert all(v["real"] > 0 and v["generated"] >= 0 for v in spread["outside"].values())
    out = quality_run["out"]
    assert (out / "image_realism.png").is_file() and "### Image realism" in (out / "report.md").read_text()
    assert "| outside the lesion | " in (out / "report.md").read_text().split("Colour spread:")[1]
    args = ["quality", str(demo_isic2018), "--model", str(quality_run["engine"]), "--limit", "2", "--no-fidelity"]
    result = runner.invoke(app, [*args, *TINY, "--no-realism", "--out", str(tmp_path / "r"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["image_realism"] is None
    assert not (tmp_path / "r" / "image_realism.png").exists()
