"""`lesionaug train` through the CLI: end to end on the demo data, and every bad input as one line."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from typer.testing import CliRunner

os.environ["HF_HUB_OFFLINE"] = "1"

pytest.importorskip("torch")

from tiny_sd import write_tiny_sd

from lesionaug.cli._app import app
from lesionaug.demo.write import write_demo_dataset

FAST = ["--model-size", "tiny", "--batch-size", "2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "example", n=16, size=96, seed=0)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def run(*args):
    result = CliRunner().invoke(app, ["train", *map(str, args)])
    return result


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_compact_tiny_trains_end_to_end_in_under_a_minute(demo, tmp_path):
    out = tmp_path / "model"
    start = time.perf_counter()
    result = run(demo, "--out", out, *FAST, "--steps", "6", "--base-steps", "6", "--checkpoint-every", "6", "--json")
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.stderr
    env = json.loads(result.stdout)
    assert env["schema"] == "lesionaug.result/1" and env["command"] == "train" and env["status"] == "ok"
    data = env["data"]
    assert [s["name"] for s in data["stages"]] == ["base", "controlnet"]
    assert all(s["steps_run"] == 6 and len(s["loss_curve"]) == 6 and s["samples_per_second"] > 0 for s in data["stages"])
    assert data["resolution"] == 64 and data["latent"] is False
    assert elapsed < 60, elapsed
    info = json.loads((out / "lesionaug.json").read_text())
    train_ids = set(info["train_ids"])
    assert train_ids and all(i.startswith("ISIC_") for i in train_ids)
    # only the training split: the demo's validation and test ids never reach training
    from lesionaug.dataset.index import load_dataset

    index = load_dataset(demo)
    assert train_ids == {s.id for s in index.usable("train")}
    assert info["split_fingerprint"] == index.subset_fingerprint(index.usable("train"))
    assert info["dataset_fingerprint"] == index.fingerprint
    assert info["label_vocabulary"]["diagnoses"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-12.png", "step-6.png"]
    assert info["shape_model"] in (None, "shape_model.npz")


def test_sd_base_from_the_cli_trains_its_controlnet(demo, tiny_sd, tmp_path):
    out = tmp_path / "m2"
    result = run(demo, "--out", out, "--base", tiny_sd, "--resolution", "32", "--steps", "2", "--batch-size", "2", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["latent"] is True and [s["name"] for s in data["stages"]] == ["controlnet"]
    assert (out / "vae" / "diffusion_pytorch_model.safetensors").is_file()


def test_resume_and_force(demo, tmp_path):
    out = tmp_path / "model"
    args = [demo, "--out", out, *FAST, "--base-steps", "1", "--resolution", "32"]
    assert run(*args, "--steps", "1").exit_code == 0
    again = run(*args, "--steps", "1")
    assert again.exit_code == 3 and "--resume" in one_error_line(again)
    more = run(*args, "--steps", "2", "--resume", "--json")  # the last stage may grow on resume
    assert more.exit_code == 0, more.stderr
    assert json.loads(more.stdout)["data"]["resumed_from_step"] == 2
    assert json.loads((out / "lesionaug.json").read_text())["steps_done"] == 3
    assert run(*args, "--steps", "1", "--seed", "3", "--force").exit_code == 0
    assert json.loads((out / "lesionaug.json").read_text())["training"]["seed"] == 3


@pytest.mark.parametrize(
    "case, code, needle",
    [
        ("batch", 3, "fewer than one batch"),
        ("resolution", 3, "not a multiple of 4"),
        ("not_sd", 4, "unet/config.json is missing"),
        ("hub_offline", 4, "--base DIR"),
        ("pickle", 4, "--allow-pickle"),
        ("unwritable", 3, "not writable"),
        ("foreign", 3, "holds no lesionaug training run"),
        ("different", 3, "different training run"),
        ("no_train", 3, "no usable training pairs"),
        ("bad_option", 3, "mixed precision"),
        ("prediction_on_sd", 3, "compact base only"),
        ("bad_prediction", 3, "unknown prediction type"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(demo, tiny_sd, tmp_path, case, code, needle):
    out = tmp_path / "out"
    dataset = demo
    extra: list = [*FAST, "--steps", "1", "--base-steps", "1", "--resolution", "32"]
    if case == "batch":
        extra += ["--batch-size", "500"]
    elif case == "resolution":
        extra += ["--resolution", "30"]
    elif case == "not_sd":
        base = tmp_path / "not-sd"
        shutil.copytree(tiny_sd, base)
        shutil.rmtree(base / "unet")
        extra += ["--base", base]
    elif case == "hub_offline":
        extra += ["--base", "lesionaug-test/not-cached"]
    elif case == "pickle":
        from diffusers import AutoencoderKL

        base = tmp_path / "pickled"
        shutil.copytree(tiny_sd, base)
        vae = AutoencoderKL.from_pretrained(base / "vae")
        shutil.rmtree(base / "vae")
        vae.save_pretrained(base / "vae", safe_serialization=False)
        extra += ["--base", base]
    elif case == "unwritable":
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        out = blocker / "model"
    elif case == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "different":
        assert run(dataset, "--out", out, *extra).exit_code == 0
        extra += ["--seed", "9"]
    elif case == "no_train":
        dataset = tmp_path / "no-train"
        shutil.copytree(demo, dataset)
        for folder in dataset.rglob("*Training*"):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
    elif case == "bad_option":
        extra += ["--mixed-precision", "fp8"]
    elif case == "prediction_on_sd":
        extra += ["--base", tiny_sd, "--prediction-type", "epsilon"]
    elif case == "bad_prediction":
        extra += ["--prediction-type", "sample"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result = run(dataset, "--out", out, *extra)
    assert result.exit_code == code, result.stderr
    assert needle in one_error_line(result)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp


def test_prediction_type_reaches_the_model_folders_scheduler(demo, tmp_path):
    for prediction, spacing in (("epsilon", "leading"), (None, "trailing")):
        out = tmp_path / f"model-{prediction}"
        option = ["--prediction-type", prediction] if prediction else []
        args = [demo, "--out", out, *FAST, "--steps", "1", "--base-steps", "1", "--resolution", "32", "--lr-warmup", "0"]
        assert run(*args, *option).exit_code == 0
        schedule = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
        assert schedule["prediction_type"] == (prediction or "v_prediction")
        assert schedule["timestep_spacing"] == spacing
        training = json.loads((out / "lesionaug.json").read_text())["training"]
        assert training["lr_warmup"] == 0 and training["prediction_type"] == schedule["prediction_type"]


def test_train_help_has_an_example():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "Example:" in result.stdout and "accelerate launch" in result.stdout
