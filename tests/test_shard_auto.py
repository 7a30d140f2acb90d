"""``--shard auto``: the shard from SLURM array or Kubernetes Indexed Job variables."""

from __future__ import annotations

import pytest

from lesionaug.errors import UsageError
from lesionaug.plan.jobs import Shard, parse_shard


@pytest.mark.parametrize(
    "text, env, expected",
    [
        # sbatch --array=0-3: task 2 of 4.
        ("auto", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3",
                  "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(2, 4)),
        # sbatch --array=1-8: ids 1..8 are shards 0..7.
        ("auto", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "8"}, Shard(0, 8)),
        # sbatch --array=0-12:4: ids 0, 4, 8, 12 are shards 0..3.
        ("auto", {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "12",
                  "SLURM_ARRAY_TASK_STEP": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(2, 4)),
        # Only an id and a count: ids from 0.
        ("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "5"}, Shard(3, 5)),
        ("auto/4", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"}, Shard(3, 4)),
        # Kubernetes: the index from the pod, the count from the command line or LESIONAUG_SHARD_COUNT.
        ("auto/6", {"JOB_COMPLETION_INDEX": "5"}, Shard(5, 6)),
        ("auto", {"JOB_COMPLETION_INDEX": "0", "LESIONAUG_SHARD_COUNT": "3"}, Shard(0, 3)),
        ("1/3", {"JOB_COMPLETION_INDEX": "0"}, Shard(1, 3)),  # an explicit shard ignores the scheduler
    ],
)
def test_scheduler_shards(text, env, expected):
    assert parse_shard(text, env) == expected


@pytest.mark.parametrize(
    "text, env, message",
    [
        ("auto", {}, "--shard auto found no scheduler shard"),
        ("auto", {"JOB_COMPLETION_INDEX": "2"}, "not how many shards there are"),
        ("auto/3", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"},
         "says 3 shards but the SLURM array has 4"),
        ("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "5",
                  "SLURM_ARRAY_TASK_COUNT": "3"}, "the SLURM array has gaps"),
        ("auto", {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "is not a whole number"),
        ("auto/0", {"JOB_COMPLETION_INDEX": "0"}, "malformed shard"),
        ("auto", {"JOB_COMPLETION_INDEX": "4", "LESIONAUG_SHARD_COUNT": "4"}, "shard 4/4 does not exist"),
    ],
)
def test_no_or_inconsistent_scheduler_variables_are_one_line_usage_errors(text, env, message):
    with pytest.raises(UsageError) as info:
        parse_shard(text, env)
    assert message in info.value.message and "\n" not in info.value.one_line()
    assert info.value.exit_code == 2


def test_auto_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("LESIONAUG_SHARD_COUNT", "2")
    assert parse_shard("auto") == Shard(1, 2)


def test_cli_without_scheduler_variables_exits_2_in_one_line(tmp_path, monkeypatch):
    from augment_runs import invoke

    for name in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    result = invoke("augment", tmp_path, "--n", "4", "--size", "64", "--shard", "auto", "--dry-run", "--json")
    assert result.exit_code == 2
    assert result.envelope["errors"][0]["message"].startswith("--shard auto found no scheduler shard")
