"""`lesionaug augment` end to end on CPU: the main job from no model, the layout of the copy, seeds
per job, resume after SIGKILL and SIGINT, the lock, the disk-space check and the config file.

The first test runs the main job in a subprocess (trains, exports and caches a tiny model: about
two minutes on 2 cores); the others reuse its engine with 2 denoising steps and take seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
from collections import Counter
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from augment_runs import (
    FAST,
    augment,
    invoke,
    output_digest,
    subprocess_env,
    trained_run,
)
from PIL import Image

from lesionaug.augment.run import RESULT_KEYS
from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.labels import Labels
from lesionaug.formats import LOCK_NAME, MANIFEST_NAME, RUN_NAME
from lesionaug.output.lock import process_state
from lesionaug.output.manifest import MANIFEST_KEYS, read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run():
    return trained_run()


def manifest_by_id(out: Path) -> dict[str, dict]:
    return {e["id"]: e for e in read_manifest(Path(out) / MANIFEST_NAME)}


def test_main_job_trains_exports_caches_and_generates(run):
    envelope = json.loads(run.proc.stdout)
    assert envelope["command"] == "augment" and envelope["status"] == "ok"
    data = envelope["data"]
    assert set(RESULT_KEYS) <= set(data)
    assert (data["n_generated"], data["n_skipped_existing"], data["n_failed"]) == (run.n, 0, 0)
    assert Path(data["out"]) == run.out  # the default: a sibling <dataset>-augmented
    assert Path(data["manifest"]) == run.out / MANIFEST_NAME
    assert len(data["plan_hash"]) == 64
    assert data["model_source"] == "trained"
    assert "training the compact tiny model first" in " ".join(run.proc.stderr.split())  # Rich wraps lines
    assert run.input_before == run.input_after  # the input folder is never written to
    record = json.loads((run.out / RUN_NAME).read_text())
    assert record["status"] == "complete" and record["plan_hash"] == data["plan_hash"]
    assert record["model"]["model"]["lesionaug"]["train_ids"] == record["train_ids"]
    assert set(record["train_ids"]) == {s.id for s in load_dataset(run.dataset).usable("train")}
    assert record["model"]["engine_dir"].startswith(str(run.cache))


def test_output_reads_back_with_the_right_counts_and_labels(run):
    before, after = load_dataset(run.dataset), load_dataset(run.out)
    assert [s.synthetic for s in after.samples].count(True) == run.n and not any(s.synthetic for s in before.samples)
    assert after.layout == before.layout
    assert after.split_counts() == {**before.split_counts(), "train": before.split_counts()["train"] + run.n}
    samples = {s.id: s for s in after.samples}
    entries = read_manifest(run.out / MANIFEST_NAME)
    assert [e["index"] for e in entries] == list(range(run.n))
    for entry in entries:
        assert list(entry) == list(MANIFEST_KEYS)
        sample = samples[entry["id"]]
        assert sample.split == "train" and sample.mask is not None and sample.synthetic
        # Its labels come back whole from the manifest: diagnosis, attributes (no Task 2 mask says them).
        assert sample.labels == Labels.from_dict(entry["labels"]) and sample.labels.diagnosis
        assert not list(run.out.rglob(f"{entry['id']}_attribute_*"))  # no faked Task 2 annotation
        extra = entry["labels"]["extra"]
        assert not {"lesion_id", "diagnosis_confirm_type", "copyright_license"} & set(extra)
        assert extra["source_lesion_id"].startswith("IL_")  # the archive lesion its label set came from
        assert entry["image"].endswith(".jpg") and entry["mask"].endswith("_segmentation.png")
        mask = np.asarray(Image.open(run.out / entry["mask"]))
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        assert Image.open(run.out / entry["image"]).format == "JPEG"
    original = before.samples[0]
    assert os.path.samefile(original.image, run.out / original.image.relative_to(before.root))  # hard link
    info = invoke("info", run.out, "--json", "-q")
    assert info.exit_code == 0
    assert info.envelope["data"]["n_samples"] == len(before.samples) + run.n
    assert (info.envelope["data"]["n_real"], info.envelope["data"]["n_synthetic"]) == (len(before.samples), run.n)
    synthetic_dx = Counter(e["labels"]["diagnosis"] for e in entries)
    assert info.envelope["data"]["synthetic_labels"]["diagnosis"] == dict(synthetic_dx.most_common())
    assert invoke("verify", run.out, "--json", "-q").envelope["data"]["ok"] is True


def test_cached_model_is_reused_and_no_train_refuses_without_one(run, tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONAUG_CACHE", str(run.cache))
    # The same label table as the run that trained the model: joined labels are part of the training
    # split's fingerprint, so the cached model is found only with them.
    labels = ("--labels", run.dataset / "isic_archive_metadata.csv")
    args = ("augment", run.dataset, *labels, "--n", "2", "--model-size", "tiny", "--train-steps", "2", *FAST, "--no-train")
    again = invoke(*args, "--out", tmp_path / "again", "--synthetic-only", "--json", "-q")
    assert again.exit_code == 0, again.stderr
    assert again.envelope["data"]["model_source"] == "cached"
    assert "training" not in again.stderr
    record = json.loads((run.out / RUN_NAME).read_text())
    given = invoke("augment", run.dataset, "--n", "2", *FAST, "--model", record["model"]["model_dir"],
                   "--out", tmp_path / "model-folder", "--synthetic-only", "--json", "-q")
    assert given.exit_code == 0, given.stderr
    assert given.envelope["data"]["model_source"] == "cached"  # exported once, by the main job
    assert given.envelope["data"]["engine"] == again.envelope["data"]["engine"]
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "empty-cache"))
    refused = invoke(*args, "--out", tmp_path / "never", "--json", "-q")
    assert refused.exit_code == 4
    assert "--no-train" in refused.envelope["errors"][0]["message"]
    assert "lesionaug train" in refused.envelope["errors"][0]["fix"]
    assert not (tmp_path / "never").exists()


def test_real_count_records_the_fitted_pairs_and_warns_about_a_generator_that_saw_more(run, tmp_path):
    from lesionaug.dataset.subsets import RealSubset, choose_real_subset

    result = invoke("augment", run.dataset, "--out", tmp_path / "subset", "--model", run.engine_dir, *FAST,
                    "--n", "2", "--real-count", "6", "--json")  # not quiet: the warning is the point
    assert result.exit_code == 0, result.stderr
    record = json.loads((tmp_path / "subset" / RUN_NAME).read_text())
    chosen = [s.id for s in choose_real_subset(load_dataset(run.dataset).usable("train"), RealSubset(count=6))]
    assert record["plan_fitted_ids"] == chosen
    assert record["config"]["real_subset"] == {"fraction": None, "count": 6, "seed": 0}
    assert record["environment"]["libraries"]["numpy"] == np.__version__
    # The engine was trained on the whole training split: 14 - 6 = 8 pairs evaluate would call hidden.
    assert "trained on 8 real pairs outside the 6 chosen by --real-count 6" in " ".join(result.stderr.split())


def test_job_images_do_not_depend_on_n_batch_size_or_shard(run, tmp_path):
    small = augment(run.dataset, tmp_path / "a", "--n", "3", "--batch-size", "3", "--synthetic-only")
    large = augment(run.dataset, tmp_path / "b", "--n", "6", "--batch-size", "1", "--synthetic-only")
    shard = augment(run.dataset, tmp_path / "c", "--n", "6", "--batch-size", "2", "--shard", "1/2", "--synthetic-only")
    assert (small.exit_code, large.exit_code, shard.exit_code) == (0, 0, 0)
    a, b, c = (manifest_by_id(tmp_path / d) for d in "abc")
    assert len(a) == 3 and len(b) == 6 and sorted(e["index"] for e in c.values()) == [1, 3, 5]
    for part, folder in ((a, "a"), (c, "c")):
        for pair_id, entry in part.items():
            assert entry["sha256"] == b[pair_id]["sha256"]
            assert (tmp_path / folder / entry["image"]).read_bytes() == (
                tmp_path / "b" / b[pair_id]["image"]
            ).read_bytes()


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start(dataset: Path, out: Path, engine: Path, *args: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "lesionaug",
        "augment",
        str(dataset),
        "--out",
        str(out),
        "--model",
        str(engine),
        *FAST,
        *args,
        "-q",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while proc.poll() is None and not ready() and time.time() < deadline:
        time.sleep(0.005)


def _wait_until_zombie(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Until the killed ``proc`` is a zombie; it is not reaped (no wait(), no poll())."""
    deadline = time.time() + timeout
    while process_state(proc.pid) != "Z" and time.time() < deadline:
        time.sleep(0.005)
    assert process_state(proc.pid) == "Z"


def test_resume_after_sigkill_is_byte_identical_with_the_killed_runs_left_unreaped(run, tmp_path):
    args = ("--n", "10", "--batch-size", "2", "--steps", "4")
    reference = augment(run.dataset, tmp_path / "ref", *args)
    assert reference.exit_code == 0
    out = tmp_path / "killed"
    manifest = out / MANIFEST_NAME
    at_kill = []
    killed: list[subprocess.Popen] = []  # zombies until the end, as where nothing reaps orphans
    try:
        # Killed right after the run record (before any pair), then after 3 and after 7 pairs; each
        # rerun starts at once, while the runs killed before it are zombies.
        for ready in (
            lambda: (out / RUN_NAME).exists(),
            lambda: _count_lines(manifest) >= 3,
            lambda: _count_lines(manifest) >= 7,
        ):
            proc = _start(run.dataset, out, run.engine_dir, *args)
            _wait_for(proc, ready)
            proc.send_signal(signal.SIGKILL)
            killed.append(proc)
            _wait_until_zombie(proc)
            at_kill.append(_count_lines(manifest))
        assert any(0 < k < 10 for k in at_kill), at_kill  # at least one kill landed mid-run
        assert (out / LOCK_NAME).exists()  # a dead run's lock file: the kernel dropped its lock
        assert all(process_state(p.pid) == "Z" for p in killed)
        finished = augment(run.dataset, out, *args)
    finally:
        for proc in killed:
            proc.wait()
    assert finished.exit_code == 0, finished.stderr
    assert finished.envelope["data"]["n_skipped_existing"] == at_kill[-1]
    assert finished.envelope["data"]["n_generated"] == 10 - at_kill[-1]
    assert output_digest(out) == output_digest(tmp_path / "ref")
    assert not (out / LOCK_NAME).exists()


def test_sigint_finishes_writes_and_says_how_to_resume(run, tmp_path):
    out = tmp_path / "interrupted"
    args = ("--n", "12", "--batch-size", "1", "--steps", "4", "--synthetic-only")
    proc = _start(run.dataset, out, run.engine_dir, *args)
    _wait_for(proc, lambda: _count_lines(out / MANIFEST_NAME) >= 1)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    errors = [ln for ln in stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and ": lesionaug augment " in errors[0]
    command = shlex.split(errors[0].split(": lesionaug augment ", 1)[1])  # the command that resumes it
    record = json.loads((out / RUN_NAME).read_text())
    written = record["counts"]["n_generated"]
    assert record["status"] == "incomplete" and 0 < written < 12
    assert _count_lines(out / MANIFEST_NAME) == written  # every written pair recorded, nothing half-done
    assert not any(".lesionaug-tmp-" in p.name for p in out.rglob("*"))
    resumed = invoke("augment", *command, "--json")
    assert resumed.exit_code == 0 and resumed.envelope["data"]["n_skipped_existing"] == written
    assert invoke("verify", out, "-q").exit_code == 0


def test_a_live_lock_stops_a_second_run_and_break_lock_cannot_clear_it(run, tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    record = json.dumps({"pid": 4242, "host": socket.gethostname(), "command": "augment"})
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, sys.argv[2].encode()); print('held', flush=True); "
            "time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out / LOCK_NAME), record], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ((), ("--break-lock",)):
            result = augment(run.dataset, out, "--n", "2", *extra)
            assert result.exit_code == 3
            message = result.envelope["errors"][0]["message"]
            assert "(pid 4242) is writing to this folder (found by the OS file lock)" in message
            assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()


def test_too_little_disk_space_is_refused_before_anything_is_written(run, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    result = augment(run.dataset, tmp_path / "full-disk", "--n", "2000")
    assert result.exit_code == 3
    assert "not enough free disk space" in result.envelope["errors"][0]["message"]
    assert not (tmp_path / "full-disk").exists()


def test_config_file_fills_options_and_the_command_line_wins(run, tmp_path):
    config = tmp_path / "ci.toml"
    config.write_text('n = 3\nsteps = 1\n"batch-size" = 3\n\n[augment]\nsynthetic_only = true\nseed = 4\n')
    out = tmp_path / "from-config"
    result = augment(run.dataset, out, "--config", config, "--n", "2")  # FAST sets --steps 2 on the line
    assert result.exit_code == 0, result.stderr
    record = json.loads((out / RUN_NAME).read_text())
    generation = record["config"]["generation"]
    assert record["config"]["plan"]["n"] == 2 and record["config"]["plan"]["seed"] == 4
    assert generation["steps"] == 2 and generation["batch_size"] == 3 and generation["synthetic_only"] is True
    config.write_text("stepz = 3\n")
    bad = augment(run.dataset, tmp_path / "bad", "--config", config, "--n", "2")
    assert bad.exit_code == 3 and "'stepz'" in bad.envelope["errors"][0]["message"]


def test_a_different_plan_is_refused_unless_forced(run, tmp_path):
    out = tmp_path / "plan"
    assert augment(run.dataset, out, "--n", "3", "--synthetic-only").exit_code == 0
    first = manifest_by_id(out)
    other = augment(run.dataset, out, "--n", "3", "--seed", "9", "--synthetic-only")
    assert other.exit_code == 3 and "different augment plan" in other.envelope["errors"][0]["message"]
    assert manifest_by_id(out) == first
    forced = augment(run.dataset, out, "--n", "2", "--seed", "9", "--synthetic-only", "--force")
    assert forced.exit_code == 0 and forced.envelope["data"]["n_skipped_existing"] == 0
    assert len(manifest_by_id(out)) == 2 and invoke("verify", out, "-q").exit_code == 0


def test_a_folder_not_made_by_lesionaug_is_never_written(run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = augment(run.dataset, out, "--n", "2")
    assert result.exit_code == 3 and "not made by lesionaug" in result.envelope["errors"][0]["message"]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    inside = augment(run.dataset, run.dataset / "aug", "--n", "2")
    assert inside.exit_code == 3 and not (run.dataset / "aug").exists()


def test_other_sizes_and_png_output(run, tmp_path):
    out = tmp_path / "png"
    result = augment(run.dataset, out, "--n", "2", "--size", "96x64", "--image-format", "png", "--synthetic-only")
    assert result.exit_code == 0, result.stderr
    assert result.envelope["data"]["output_size"] == [96, 64]
    assert result.envelope["data"]["generation_size"] == [64, 44]  # the model's 64 px on the long side
    # The generator works below the pairs' size: the result and the run record say so.
    note = result.envelope["data"]["size_note"]
    assert note.startswith("the generator makes 64x44 images and the pairs are 96x64")
    assert json.loads((out / RUN_NAME).read_text())["size_note"] == note
    for entry in manifest_by_id(out).values():
        image, mask = Image.open(out / entry["image"]), Image.open(out / entry["mask"])
        assert image.format == "PNG" and image.size == (96, 64) and mask.size == (96, 64)
    label_file = out / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = label_file.read_text().splitlines()
    assert lines[0].startswith("image,MEL") and [ln.split(",")[0] for ln in lines[1:]] == ["SYN_0000001", "SYN_0000002"]
    assert {s.id for s in load_dataset(out).samples} == {"SYN_0000001", "SYN_0000002"}


def test_pairs_take_the_datasets_size_and_an_upscale_is_said_in_one_line(run, tmp_path):
    """No --size: the demo's 64 px images give 64 px pairs from the 64 px model, nothing said;
    128 px pairs from it are upscaled, and stderr says so once."""
    engine = str(run.engine_dir)
    base = ["augment", str(run.dataset), "--model", engine, "--steps", "2", "--guidance", "1.0", "--n", "1",
            "--synthetic-only", "--json"]  # fmt: skip
    default = invoke(*base, "--out", str(tmp_path / "default"), "-q")
    assert default.exit_code == 0 and default.envelope["data"]["output_size"] == [64, 64]
    assert default.envelope["data"]["size_note"] is None
    upscaled = invoke(*base, "--out", str(tmp_path / "big"), "--size", "128")
    assert upscaled.exit_code == 0, upscaled.stderr
    said = " ".join(upscaled.stderr.split())  # the console wraps long lines at its width
    assert said.count("the generator makes") == 1 and f"warning: {upscaled.envelope['data']['size_note']}" in said
    assert "64x64 images and the pairs are 128x128" in said


def test_a_pair_that_fails_to_write_gives_exit_5_and_the_rerun_completes(run, tmp_path, monkeypatch):
    from lesionaug.output import pair_writer as writer
    real = writer.encode_image
    calls = []

    def flaky(image, fmt):
        calls.append(1)
        if len(calls) == 2:  # one pair's own failure; the OS refusing the output (a full disk) stops
            raise ValueError("the encoder failed")  # the run with exit 3 instead (test_adversarial.py)
        return real(image, fmt)

    monkeypatch.setattr(writer, "encode_image", flaky)
    out = tmp_path / "partial"
    failed = augment(run.dataset, out, "--n", "4", "--synthetic-only", "--batch-size", "1")
    assert failed.exit_code == 5 and failed.envelope["status"] == "partial"
    assert failed.envelope["data"]["n_failed"] == 1 and failed.envelope["data"]["n_generated"] == 3
    assert json.loads((out / RUN_NAME).read_text())["status"] == "incomplete"
    monkeypatch.setattr(writer, "encode_image", real)
    again = augment(run.dataset, out, "--n", "4", "--synthetic-only", "--batch-size", "1")
    assert again.exit_code == 0 and again.envelope["data"]["n_generated"] == 1
    assert invoke("verify", out, "-q").exit_code == 0


def test_growing_or_shrinking_n_with_force_keeps_the_shared_pairs(run, tmp_path):
    out, fresh = tmp_path / "grown", tmp_path / "fresh"
    assert augment(run.dataset, out, "--n", "3", "--synthetic-only").exit_code == 0
    refused = augment(run.dataset, out, "--n", "5", "--synthetic-only")
    assert refused.exit_code == 3 and "--force keeps the pairs" in refused.envelope["errors"][0]["fix"]
    grown = augment(run.dataset, out, "--n", "5", "--synthetic-only", "--force")
    assert grown.exit_code == 0
    assert (grown.envelope["data"]["n_skipped_existing"], grown.envelope["data"]["n_generated"]) == (3, 2)
    assert augment(run.dataset, fresh, "--n", "5", "--synthetic-only").exit_code == 0
    assert output_digest(out) == output_digest(fresh)
    shrunk = augment(run.dataset, out, "--n", "2", "--synthetic-only", "--force")
    assert shrunk.exit_code == 0 and shrunk.envelope["data"]["n_skipped_existing"] == 2
    assert sorted(manifest_by_id(out)) == ["SYN_0000001", "SYN_0000002"]
    assert invoke("verify", out, "-q").exit_code == 0  # the dropped pairs' files are gone too


def test_a_model_trained_with_its_own_prompt_template_gets_prompts_in_it(run, tmp_path):
    """Without --prompt-template the plan takes the --model's template (from its card); a given
    template is kept, with one line saying it differs; a broken template in the card is the card's
    fault (exit 4, one line naming it)."""
    record = json.loads((run.out / RUN_NAME).read_text())
    engine = tmp_path / "engine"
    shutil.copytree(record["model"]["engine_dir"], engine)
    card_path = engine / "lesionaug.json"
    card = json.loads(card_path.read_text())
    card["model"]["prompt_template"] = "{diagnosis} seen through a dermatoscope"
    card_path.write_text(json.dumps(card))
    args = ["augment", run.dataset, "--labels", run.dataset / "isic_archive_metadata.csv", "--model", engine,
            "--n", "3", "--dry-run", "--json", "-q"]
    own = invoke(*args)
    assert own.exit_code == 0, own.stderr
    assert own.envelope["data"]["config"]["template"] == "{diagnosis} seen through a dermatoscope"
    assert all(job["prompt"].endswith(" seen through a dermatoscope") for job in own.envelope["data"]["jobs"])
    given = invoke(*args[:-1], "--prompt-template", "a dermoscopic image of {diagnosis}")
    assert given.exit_code == 0 and given.envelope["data"]["config"]["template"] == "a dermoscopic image of {diagnosis}"
    assert "the model was trained with the prompt template" in " ".join(given.stderr.split())
    card["model"]["prompt_template"] = "{diagnosis} {colour}"
    card_path.write_text(json.dumps(card))
    broken = invoke(*args)
    assert broken.exit_code == 4 and "its card's prompt template" in broken.envelope["errors"][0]["message"]


def test_the_cache_slot_changes_with_the_training_recipe_not_with_the_seed(monkeypatch):
    """A release that changes a default (here: the small model's patch size) trains anew instead of
    reusing the model an older recipe left in the cache."""
    import lesionaug.augment.model_choice as choice
    from lesionaug.train import networks

    budget = choice.TrainingBudget("small", None, "cpu")
    key = budget.key("f" * 40)
    assert key.startswith("f" * 24 + "-small-default-")
    assert budget.config(seed=3).seed == 3 and budget.key("f" * 40) == key
    assert choice.TrainingBudget("small", 50, "cpu").key("f" * 40) != key
    changed = {**networks.COMPACT_SIZES, "small": {**networks.COMPACT_SIZES["small"], "patch_size": 2}}
    monkeypatch.setattr("lesionaug.train.config.COMPACT_SIZES", changed)
    assert budget.key("f" * 40) != key
