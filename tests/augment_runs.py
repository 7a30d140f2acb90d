"""Augment runs shared by the augment, verify and merge tests.

``trained_run()`` runs the README's main job once per session in a subprocess: ``augment`` with no
model on a 24-pair demo dataset, which trains the tiny compact model (2 steps a stage), exports it
and caches it (in a temporary cache folder), then generates. Later runs reuse that engine with
``--model`` and tiny sampler settings, in process through the CLI runner, so each takes seconds.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from lesionaug.formats import RUN_NAME

FAST = ("--size", "64", "--steps", "2", "--guidance", "1.0")
_STATE: dict[str, object] = {}


def tree_digest(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (minus names in ``exclude``)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.name not in exclude:
            out[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def output_digest(folder: Path) -> dict[str, str]:
    """An output's files and contents, except the run record (it holds timings)."""
    return tree_digest(folder, exclude=(RUN_NAME,))


def scratch(name: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"lesionaug-{name}-"))
    atexit.register(shutil.rmtree, root, True)
    return root


def subprocess_env(cache: Path | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if cache is not None:
        env["LESIONAUG_CACHE"] = str(cache)
    return env


def run_cli(*args: str, cache: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lesionaug", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=subprocess_env(cache),
        timeout=timeout,
    )


@dataclass(frozen=True)
class TrainedRun:
    dataset: Path
    out: Path
    cache: Path
    engine_dir: Path
    proc: subprocess.CompletedProcess
    input_before: dict
    input_after: dict
    n: int


def trained_run() -> TrainedRun:
    """The main job with no model given: train, export, cache, generate (once per session)."""
    if "trained" not in _STATE:
        from lesionaug.demo.write import write_demo_dataset

        root = scratch("augment")
        dataset = write_demo_dataset(root / "isic", n=24, layout="isic2018", size=64, seed=0)
        cache = root / "cache"
        before = tree_digest(dataset)
        n = 5
        proc = run_cli(
            "augment",
            dataset,
            "--labels",  # the Task 1 images' diagnoses, from the demo's archive export
            dataset / "isic_archive_metadata.csv",
            "--n",
            n,
            "--model-size",
            "tiny",
            "--train-steps",
            "2",
            "--batch-size",
            "2",
            *FAST,
            "--json",
            cache=cache,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = root / "isic-augmented"
        record = json.loads((out / RUN_NAME).read_text())
        _STATE["trained"] = TrainedRun(
            dataset, out, cache, Path(record["model"]["engine_dir"]), proc, before, tree_digest(dataset), n
        )
    return _STATE["trained"]  # type: ignore[return-value]


@dataclass(frozen=True)
class Invocation:
    exit_code: int
    envelope: dict | None
    stderr: str
    stdout: str = ""


def augment(dataset: Path, out: Path, *args: str, engine: Path | None = None, command: str = "augment") -> Invocation:
    """``lesionaug augment DATASET --out OUT --model ENGINE <fast settings> ARGS --json -q`` in process."""
    model = ["--model", str(engine or trained_run().engine_dir)]
    full = [command, str(dataset), "--out", str(out), *model, *FAST, *map(str, args), "--json", "-q"]
    return invoke(*full)


def invoke(*args: str) -> Invocation:
    from lesionaug.cli import app

    result = CliRunner().invoke(app, list(map(str, args)), catch_exceptions=False)
    lines = result.stdout.strip().splitlines()
    envelope = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return Invocation(result.exit_code, envelope, result.stderr, result.stdout)
