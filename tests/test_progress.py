"""Progress in batch logs: plain lines at a steady interval when stderr is not a terminal, --log-file,
and the command line that resumes an interrupted run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lesionaug.cli._app import Out, RichReporter, run_command
from lesionaug.cli._invocation import RESUME_FLAG, RESUME_SAME
from lesionaug.progress import PlainTask, format_duration, progress_interval


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_at_the_interval_with_step_rate_eta_and_loss() -> None:
    clock, lines = Clock(), []
    task = PlainTask("stage 2: ControlNet", 100, lines.append, interval=30, clock=clock)
    task.advance(40)  # a resumed run's steps already done: they do not count towards the rate
    for _ in range(10):
        clock.now += 5  # 2 steps per second from here
        task.advance(2, loss=0.25)
    # 50 s: one line at 30 s (6 advances, 12 steps since the anchor), none before, none after yet.
    assert lines == ["stage 2: ControlNet:  52/100 (52%)  0.4 it/s  eta 2m00s  elapsed 30s  loss 0.25"]
    clock.now += 10
    task.advance(2, loss=0.125)
    # 22 steps in 60 s since the first advance: 0.367 it/s, 38 steps left.
    assert len(lines) == 2 and lines[1].startswith("stage 2: ControlNet:  62/100 (62%)  0.367 it/s  eta 1m44s")
    task.close()
    assert lines[-1].endswith("loss 0.125  stopped")  # closed before its total: says so


def test_a_short_task_writes_only_its_closing_line() -> None:
    clock, lines = Clock(), []
    task = PlainTask("indexing", 3, lines.append, interval=30, clock=clock)
    for _ in range(3):
        clock.now += 0.1
        task.advance()
    task.close()
    assert lines == ["indexing:  3/3 (100%)  10 it/s  elapsed 0.3s  done"]
    unknown = PlainTask("loading denoiser on cpu", None, lines.append, interval=30, clock=clock)
    clock.now += 2
    unknown.close()
    assert lines[-1] == "loading denoiser on cpu:  elapsed 2.0s  done"


def test_interval_and_duration_formats(monkeypatch) -> None:
    monkeypatch.setenv("LESIONAUG_PROGRESS_INTERVAL", "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv("LESIONAUG_PROGRESS_INTERVAL", "soon")
    assert progress_interval() == 30.0
    assert [format_duration(s) for s in (0.04, 9.94, 61, 3725)] == ["0.0s", "9.9s", "1m01s", "1h02m"]


# ----------------------------------------------------------------------------- through a command


def _command_app(work):
    app = typer.Typer()

    @app.command("job")
    def job(
        data: Path,
        steps: int = typer.Option(3, "--steps"),
        force: bool = typer.Option(False, "--force"),
        tag: list[str] = typer.Option(None, "--tag"),
        log_file: Path = typer.Option(None, "--log-file"),
        resume_mode: str = typer.Option("none", "--resume-mode"),
    ) -> None:
        resume = {"flag": RESUME_FLAG, "same": RESUME_SAME}.get(resume_mode)
        run_command("train", Out(log_file=log_file), lambda reporter: work(reporter, steps), resume=resume)

    @app.command("other")
    def other() -> None:  # a second command, so Typer keeps `job` as a subcommand
        raise typer.Exit(0)

    return app


def test_a_non_terminal_gets_plain_lines_and_the_log_file_gets_them_timestamped(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LESIONAUG_PROGRESS_INTERVAL", "0")

    def work(reporter, steps):
        with reporter.task("training", total=steps) as task:
            for _ in range(steps):
                task.advance(loss=0.5)
        reporter.warn("a warning")
        return {"ok": True}, None

    log = tmp_path / "logs" / "run.log"
    result = CliRunner().invoke(_command_app(work), ["job", "d", "--log-file", str(log)])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("training:")]
    assert [re.match(r"training:  (\d)/3", line).group(1) for line in progress] == ["1", "2", "3", "3"]
    assert progress[-1].endswith("loss 0.5  done") and "warning: a warning" in result.stderr
    logged = log.read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ", line) for line in logged)
    assert [re.search(r"training:  (\d)/3", line).group(1) for line in logged if "training:" in line] == [
        "1", "2", "3", "3"
    ]
    assert logged[-2].endswith("warning: a warning") and logged[-1].endswith("lesionaug train: done")


def test_ctrl_c_ends_with_the_command_that_resumes(tmp_path) -> None:
    def work(reporter, steps):
        raise KeyboardInterrupt

    log = tmp_path / "run.log"
    args = ["job", "my data", "--steps", "7", "--tag", "a", "--tag", "b", "--force", "--log-file", str(log)]
    flag = CliRunner().invoke(_command_app(work), [*args, "--resume-mode", "flag"])
    assert flag.exit_code == 130
    error = [line for line in flag.stderr.splitlines() if "error:" in line]
    assert error == [
        f"lesionaug train: error: interrupted -- resume with: lesionaug job 'my data' --steps 7 --tag a --tag b "
        f"--log-file {log} --resume-mode flag --resume"
    ]  # --force dropped: it would start over
    assert log.read_text().splitlines()[-1].endswith(error[0])
    same = CliRunner().invoke(_command_app(work), [*args, "--resume-mode", "same"])
    assert same.stderr.strip().endswith(f"--steps 7 --force --tag a --tag b --log-file {log} --resume-mode same")
    none = CliRunner().invoke(_command_app(work), [*args])
    assert none.exit_code == 130 and "resume with" not in none.stderr


def test_a_log_file_that_cannot_be_opened_is_one_line_exit_3(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(
        _command_app(lambda reporter, steps: ({}, None)), ["job", "d", "--log-file", str(blocker / "run.log")]
    )
    assert result.exit_code == 3 and "cannot open the log file" in result.stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_silences_stderr_but_not_the_log_file(tmp_path, quiet) -> None:
    log = tmp_path / "q.log"
    reporter = RichReporter(Out(quiet=quiet, log_file=log))
    reporter.open_log()
    with reporter.task("indexing", total=2) as task:
        task.advance(2)
    reporter.close_log()
    assert "indexing:  2/2 (100%)" in log.read_text()
