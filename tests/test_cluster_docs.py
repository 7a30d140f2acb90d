"""docs/cluster.md, run: its SLURM scripts and Kubernetes manifests' own commands, with the
scheduler's variables set by hand, on the tiny demo dataset; the merged shards must equal an
unsharded run of the same plan, byte for byte."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from augment_runs import output_digest, run_cli, subprocess_env, trained_run

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"
N = "4"


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> dict:
    """An environment whose ``lesionaug`` on PATH is this tree's CLI (as an installed one would be)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    exe = bin_dir / "lesionaug"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lesionaug "$@"\n')
    exe.chmod(0o755)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = subprocess_env(trained_run().cache)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    for name in [k for k in env if k.startswith(("SLURM_", "JOB_COMPLETION_INDEX", "LESIONAUG_SHARD"))]:
        del env[name]
    return env


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory) -> Path:
    run = trained_run()
    out = tmp_path_factory.mktemp("unsharded") / "out"
    proc = run_cli("augment", run.dataset, "--model", run.engine_dir, "--n", N, "--seed", "0", "--out", out,
                   "--json", "--quiet", cache=run.cache)
    assert proc.returncode == 0, proc.stderr
    return out


def run_shell(command: list[str], env: dict) -> None:
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_slurm_array_then_merge_equals_the_unsharded_run(shim, unsharded, tmp_path):
    generate, merge = fenced_blocks("bash")[:2]
    assert "#SBATCH --array=" in generate and "lesionaug merge" in merge
    low, high = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", generate).groups())
    (tmp_path / "generate.sbatch").write_text(generate)
    (tmp_path / "merge.sbatch").write_text(merge)
    run = trained_run()
    env = {**shim, "DATA": str(run.dataset), "ENGINE": str(run.engine_dir), "OUT": str(tmp_path / "out"), "N": N}
    for task in range(low, high + 1):  # what sbatch --array sets in each task
        array = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(low),
                 "SLURM_ARRAY_TASK_MAX": str(high), "SLURM_ARRAY_TASK_COUNT": str(high - low + 1)}
        run_shell(["bash", str(tmp_path / "generate.sbatch")], {**env, **array})
    run_shell(["bash", str(tmp_path / "merge.sbatch")], env)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["merged", "shard-0", "shard-1", "shard-2",
                                                                    "shard-3"]
    assert output_digest(tmp_path / "out" / "merged") == output_digest(unsharded)


def test_kubernetes_indexed_job_then_merge_equals_the_unsharded_run(shim, unsharded, tmp_path):
    import yaml

    shards, merge = (yaml.safe_load(text) for text in fenced_blocks("yaml")[:2])
    assert shards["spec"]["completionMode"] == "Indexed"
    completions = shards["spec"]["completions"]
    run = trained_run()
    # The pod's paths are the volumes' mount points; here they are folders of this test.
    paths = {"DATA": str(run.dataset), "ENGINE": str(run.engine_dir), "OUT": str(tmp_path / "out"), "N": N}

    def container_env(job: dict) -> tuple[list[str], dict]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        declared = {e["name"]: str(e["value"]) for e in container.get("env", [])}
        return container["command"], {**shim, **declared, **{k: v for k, v in paths.items() if k in declared}}

    command, env = container_env(shards)
    assert env["LESIONAUG_SHARD_COUNT"] == str(completions)
    for index in range(completions):  # what the Indexed Job sets in each pod
        run_shell(command, {**env, "JOB_COMPLETION_INDEX": str(index)})
    command, env = container_env(merge)
    run_shell(command, env)
    assert output_digest(tmp_path / "out" / "merged") == output_digest(unsharded)
