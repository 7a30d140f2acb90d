"""The CLI shell: version, help, the JSON envelope, exit codes, start-up imports, generated docs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lesionaug import __version__
from lesionaug.cli import app, main

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "onnxruntime", "transformers", "monai", "matplotlib")
ENVELOPE_KEYS = {"schema", "command", "status", "exit_code", "data", "errors"}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lesionaug", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def command_names() -> list[str]:
    group = typer.main.get_command(app)
    return group.list_commands(typer.Context(group))


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"lesionaug {__version__}"


def test_help_and_completion_do_not_import_heavy_libraries() -> None:
    probe = (
        "import sys\n"
        "from lesionaug.cli import main\n"
        "for argv in (['--help'], *[[c, '--help'] for c in sys.argv[1:]]):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (argv, exc.code)\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *command_names()], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"

    env = {**os.environ, "_LESIONAUG_COMPLETE": "complete_bash", "COMP_WORDS": "lesionaug ", "COMP_CWORD": "1"}
    probe_completion = (
        "import sys\n"
        "from lesionaug.cli import main\n"
        "try:\n"
        "    main([])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"sys.stderr.write(repr([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe_completion], capture_output=True, text=True, env=env, timeout=120)
    assert "info" in proc.stdout.split(), proc.stdout + proc.stderr
    assert proc.stderr.strip().endswith("[]"), proc.stderr


def test_every_command_has_help_with_an_example() -> None:
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    names = command_names()
    assert "info" in names
    for name in names:
        cmd = group.get_command(ctx, name)
        assert cmd.help and cmd.help.strip(), f"{name} has no help"
        assert "Example:" in cmd.help, f"{name} help has no Example: line"
        option_names = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        assert {"--json", "--quiet", "-q", "--verbose", "-v"} <= option_names, f"{name} lacks the shared options"


def test_usage_error_exits_2_with_an_envelope_under_json() -> None:
    proc = run_cli("info", "--no-such-option", "--json")
    assert proc.returncode == 2
    env = json.loads(proc.stdout)
    assert set(env) == ENVELOPE_KEYS
    assert env["status"] == "error" and env["exit_code"] == 2
    assert "Traceback" not in proc.stderr


def test_error_envelope_is_pinned(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    proc = run_cli("info", str(missing), "--json")
    assert proc.returncode == 3
    env = json.loads(proc.stdout)
    assert set(env) == ENVELOPE_KEYS
    assert env["schema"] == "lesionaug.result/1"
    assert env["command"] == "info"
    assert env["status"] == "error"
    assert env["exit_code"] == 3
    assert env["data"] is None
    assert len(env["errors"]) == 1 and set(env["errors"][0]) == {"code", "message", "path", "fix"}
    assert str(missing) in env["errors"][0]["path"]
    # one line on stderr, naming the file, no traceback
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0]
    assert "Traceback" not in proc.stderr


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli("info", str(tmp_path / "nope"), "-v")
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr


def test_no_color_honoured(tmp_path: Path) -> None:
    proc = run_cli("info", str(tmp_path / "nope"), env={"NO_COLOR": "1", "FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert proc.returncode == 3
    assert "\x1b[" not in proc.stderr


def test_main_entry_point_maps_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_cli_runner_sees_the_same_app() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_generated_docs_are_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    man = (ROOT / "man" / "lesionaug.1").read_text()
    for section in (".SH EXIT STATUS", ".SH ENVIRONMENT", ".SH FILES", ".SH EXAMPLES"):
        assert section in man
    for name in command_names():
        assert f"lesionaug {name}".replace("-", "\\-") in man
