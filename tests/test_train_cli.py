"""`lesionaug train` through the CLI: end to end on the demo data, and every bad input as one line."""

from __future__ import annotations

import json
import os
import re
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
def test_compact_tiny_trains_end_to_end_with_labels_joined_from_the_archive_table(demo, tmp_path):
    out = tmp_path / "model"
    labels = ("--labels", demo / "isic_archive_metadata.csv")
    result = run(demo, "--out", out, *FAST, *labels, "--steps", "6", "--base-steps", "6", "--checkpoint-every", "6", "--json")
    assert result.exit_code == 0, result.stderr
    env = json.loads(result.stdout)
    assert env["schema"] == "lesionaug.result/1" and env["command"] == "train" and env["status"] == "ok"
    data = env["data"]
    assert [s["name"] for s in data["stages"]] == ["base", "controlnet"]
    assert all(s["steps_run"] == 6 and len(s["loss_curve"]) == 6 and s["samples_per_second"] > 0 for s in data["stages"])
    assert data["resolution"] == 64 and data["latent"] is False
    info = json.loads((out / "lesionaug.json").read_text())
    train_ids = set(info["train_ids"])
    assert train_ids and all(i.startswith("ISIC_") for i in train_ids)
    # only the training split: the demo's validation and test ids never reach training
    from lesionaug.dataset.index import load_dataset

    index = load_dataset(demo, labels=[labels[1]])
    assert train_ids == {s.id for s in index.usable("train")}
    assert info["split_fingerprint"] == index.subset_fingerprint(index.usable("train"))
    assert info["dataset_fingerprint"] == index.fingerprint
    assert info["label_vocabulary"]["diagnoses"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-12.png", "step-6.png"]
    assert info["shape_model"] in (None, "shape_model.npz")


@pytest.mark.slow
def test_real_count_trains_on_the_subset_evaluate_gives_its_segmenters(demo, tmp_path):
    from lesionaug.dataset.index import load_dataset
    from lesionaug.dataset.subsets import RealSubset, choose_real_subset
    from lesionaug.evaluate.run import EvaluateConfig
    from lesionaug.train.model_folder import RUN_MARKER

    out = tmp_path / "model"
    result = run(demo, "--out", out, *FAST, "--steps", "1", "--base-steps", "1", "--real-count", "5",
                 "--split-seed", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["data"]["train_pairs"] == 5
    info = json.loads((out / "lesionaug.json").read_text())
    index = load_dataset(demo)
    # The same option on evaluate chooses the same pairs (one function, dataset/subsets.py).
    config = EvaluateConfig(dataset=demo, augmented=demo, real_count=5, split_seed=3)
    expected = [s.id for s in choose_real_subset(index.usable("train"), config.real_subset())]
    assert info["train_ids"] == expected and len(expected) == 5
    assert info["real_subset"] == RealSubset(count=5, seed=3).to_dict()
    assert info["split_fingerprint"] == index.subset_fingerprint(choose_real_subset(index.usable("train"),
                                                                                    RealSubset(count=5, seed=3)))
    marker = json.loads((out / RUN_MARKER).read_text())
    assert marker["environment"]["libraries"]["torch"] is not None
    both = run(demo, "--out", tmp_path / "m2", *FAST, "--real-count", "5", "--real-fraction", "0.5")
    assert both.exit_code == 2 and "--real-count" in one_error_line(both)


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
        ("bad_option", 2, "'fp8' is not one of 'no', 'fp16', 'bf16'"),
        ("prediction_on_sd", 2, "compact base only"),
        ("bad_prediction", 2, "'sample' is not one of 'epsilon', 'v_prediction'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(demo, tiny_sd, tmp_path, case, code, needle):
    out = tmp_path / "out"
    dataset = demo
    extra: list = [*FAST, "--train-steps", "1", "--base-steps", "1", "--size", "32"]
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
        args = [demo, "--out", out, *FAST, "--train-steps", "1", "--base-steps", "1", "--size", "32", "--lr-warmup", "0"]
        assert run(*args, *option).exit_code == 0
        schedule = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
        assert schedule["prediction_type"] == (prediction or "v_prediction")
        assert schedule["timestep_spacing"] == spacing
        training = json.loads((out / "lesionaug.json").read_text())["training"]
        assert training["lr_warmup"] == 0 and training["prediction_type"] == schedule["prediction_type"]


def test_pooled_prompt_reaches_the_saved_networks_and_the_verified_onnx_graph(demo, tmp_path, monkeypatch):
    import numpy as np
    import onnxruntime as ort

    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "model"
    args = [demo, "--out", out, *FAST, "--train-steps", "1", "--base-steps", "1", "--size", "32", "--lr-warmup", "0"]
    assert run(*args, "--pooled-prompt").exit_code == 0
    for network in ("unet", "controlnet"):
        config = json.loads((out / network / "config.json").read_text())
        assert config["class_embed_type"] == "projection", network
    assert json.loads((out / "lesionaug.json").read_text())["training"]["pooled_prompt"] is True
    # export checks every graph against PyTorch: the pooling is inside the denoiser graph, whose
    # inputs are those of any other compact model.
    engine = tmp_path / "engine"
    result = CliRunner().invoke(app, ["export", str(out), "--out", str(engine), "--json"])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(engine / "denoiser.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["sample", "timestep", "encoder_hidden_states",
                                                      "controlnet_cond", "conditioning_scale"]
    rng = np.random.default_rng(0)
    states = rng.standard_normal((1, *session.get_inputs()[2].shape[1:])).astype(np.float32)
    feed = {"sample": rng.standard_normal((1, 3, 32, 32)).astype(np.float32), "timestep": np.array([500.0], np.float32),
            "controlnet_cond": np.zeros((1, 3, 32, 32), np.float32), "conditioning_scale": np.array([1.0], np.float32)}
    a = session.run(None, {**feed, "encoder_hidden_states": states})[0]
    b = session.run(None, {**feed, "encoder_hidden_states": states + 1.0})[0]  # moves the mean token state
    assert np.abs(a - b).mean() > 1e-4
    # The CPU engine cuts the denoiser where nodes stop depending on the text only (engine/stages.py):
    # the time embedding reads the text now, and a guided batch still gets the whole graph's numbers.
    from lesionaug.engine import Engine

    staged = Engine.load(engine, "cpu", threads=1).runners["denoiser"]
    guided = {name: np.concatenate([value, value]) for name, value in feed.items() if name != "conditioning_scale"}
    guided |= {"conditioning_scale": feed["conditioning_scale"],
               "encoder_hidden_states": np.concatenate([states, np.zeros_like(states)])}
    expected = session.run(["noise_pred"], guided)[0]
    assert np.abs(expected[0] - expected[1]).mean() > 1e-4  # the two halves differ by their prompt alone
    assert np.abs(staged.run(guided) - expected).max() <= 1e-5
    # A Stable Diffusion base keeps its own UNet: the option is refused there, and by pix2pixhd.
    refused = run(demo, "--out", tmp_path / "gan", "--generator", "pix2pixhd", "--pooled-prompt")
    assert refused.exit_code == 2 and "--pooled-prompt applies to the diffusion generator" in refused.stderr


def test_train_help_has_an_example():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "Example:" in result.stdout and "accelerate launch" in result.stdout


@pytest.mark.slow
def test_loss_log_curve_and_tensorboard_cover_a_resumed_run(demo, tmp_path):
    pytest.importorskip("tensorboard", reason="--report-to tensorboard needs the tensorboard package")
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lesionaug.train.loss_log import read_loss_log

    out = tmp_path / "model"
    args = [demo, "--out", out, *FAST, "--base-steps", "2", "--resolution", "32", "--report-to", "tensorboard"]
    first = run(*args, "--steps", "2", "--json")
    assert first.exit_code == 0, first.stderr
    data = json.loads(first.stdout)["data"]
    rows = read_loss_log(out / "loss.csv")
    assert [(r["step"], r["stage"]) for r in rows] == [(1, "base"), (2, "base"), (3, "controlnet"), (4, "controlnet")]
    for stage in data["stages"]:  # the file holds the very losses the run reports
        assert stage["loss_curve"] == [round(r["loss"], 6) for r in rows if r["stage"] == stage["name"]]
    assert data["loss_curve_png"] == str(out / "loss_curve.png") and Image.open(out / "loss_curve.png").format == "PNG"
    again = run(*args, "--steps", "3", "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert [r["step"] for r in read_loss_log(out / "loss.csv")] == [1, 2, 3, 4, 5]  # resumed at 4: no step twice
    events = EventAccumulator(str(out / "logs" / "lesionaug"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/base")] == [1, 2]
    assert sorted({e.step for e in events.Scalars("loss/controlnet")}) == [3, 4, 5]


def test_an_unknown_or_missing_tracker_is_refused_before_training(demo, tmp_path, monkeypatch):
    args = [demo, "--out", tmp_path / "m", *FAST, "--train-steps", "1", "--base-steps", "1", "--size", "32"]
    unknown = run(*args, "--report-to", "mlflow")
    assert unknown.exit_code == 2 and "'mlflow' is not one of" in one_error_line(unknown)
    from lesionaug.train import loss_log

    monkeypatch.setitem(loss_log.TRACKER_PACKAGES, "wandb", "no_such_package_for_the_test")
    missing = run(*args, "--report-to", "wandb")
    assert missing.exit_code == 4 and "lesionaug[wandb]" in one_error_line(missing)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_sigterm_prints_progress_lines_and_the_command_that_resumes(demo, tmp_path):
    import shlex
    import signal
    import subprocess
    import sys

    out, log = tmp_path / "model", tmp_path / "stderr.txt"
    given = [str(demo), "--out", str(out), *FAST, "--base-steps", "2", "--train-steps", "40", "--size", "32", "--force"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "LESIONAUG_PROGRESS_INTERVAL": "0"}
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "lesionaug", "train", *given], stderr=stderr, env=env)
        deadline = time.monotonic() + 600
        while "stage 2: ControlNet:  1/40" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # what SLURM sends at the time limit
        assert proc.wait(timeout=300) == 130, log.read_text()[-2000:]
    text = log.read_text()
    # Not a terminal: plain lines with the step, the total, the rate, the time left and the loss.
    assert re.search(r"stage 1: text-to-image base:  2/2 \(100%\)  [\d.]+ it/s  elapsed \S+  loss [\d.]+", text)
    errors = [line for line in text.splitlines() if "error:" in line]
    assert len(errors) == 1 and "resume with: lesionaug train " in errors[0]
    command = errors[0].split("resume with: ", 1)[1]
    words = shlex.split(command)  # what was given (in the command's own option order), --resume for --force
    assert words[:3] == ["lesionaug", "train", str(demo)] and words[-1] == "--resume"
    assert sorted(words) == sorted(["lesionaug", "train", *[a for a in given if a != "--force"], "--resume"])
    resumed = subprocess.run(
        [sys.executable, "-m", *shlex.split(command), "--steps", "1", "--json"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["data"]["resumed_from_step"] == 2  # from the end of stage 1
