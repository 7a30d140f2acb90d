"""The Typer app, the option set every command shares, and the one place errors become exit codes.

A command body is a function that returns ``(data, render)``: ``data`` is what ``--json`` prints
inside the envelope, ``render`` draws the human view on stdout. ``run_command`` does the rest.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lesionaug import __version__
from lesionaug.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    Interrupted,
    LesionaugError,
    PartialFailure,
)
from lesionaug.formats import RESULT_SCHEMA as SCHEMA

app = typer.Typer(
    name="lesionaug",
    help=(
        "Augment a skin-lesion segmentation dataset with generated image/mask pairs.\n\n"
        "Example: lesionaug augment ./isic --n 5000"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The option set every command takes after its name (defined once, used by every command).
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON result envelope on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info on stderr.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs; tracebacks on error.")]


@dataclass(frozen=True)
class Out:
    """Where output goes for one command invocation."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False

    @property
    def stdout(self) -> Console:
        return Console(file=sys.stdout, no_color=_no_color(), highlight=False, soft_wrap=True)

    @property
    def stderr(self) -> Console:
        return Console(file=sys.stderr, stderr=True, no_color=_no_color(), highlight=False)


def _no_color() -> bool:
    return "NO_COLOR" in os.environ and os.environ["NO_COLOR"] != ""


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any):
        self._progress = progress
        self._id = task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        self._progress.update(self._id, advance=n, **_fields(fields))

    def update(self, **fields: Any) -> None:
        total = fields.pop("total", None)
        if total is not None:
            self._progress.update(self._id, total=total)
        self._progress.update(self._id, **_fields(fields))


def _fields(fields: dict) -> dict:
    if not fields:
        return {}
    text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
    return {"info": text}


class RichReporter:
    """Progress bars and info lines on stderr; silent when ``--quiet``."""

    def __init__(self, out: Out):
        self.out = out
        self.console = out.stderr

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=self.out.quiet,
            transient=False,
        )
        with progress:
            task_id = progress.add_task(description, total=total, info="")
            yield _RichTask(progress, task_id)

    def info(self, message: str) -> None:
        if not self.out.quiet:
            self.console.print(message, markup=False, highlight=False)

    def warn(self, message: str) -> None:
        if not self.out.quiet:
            self.console.print(f"warning: {message}", style="yellow", markup=False, highlight=False)

    def debug(self, message: str) -> None:
        if self.out.verbose:
            self.console.print(message, style="dim", markup=False, highlight=False)


def envelope(command: str, status: str, exit_code: int, data: Any, errors: list[dict]) -> dict:
    return {
        "schema": SCHEMA,
        "command": command,
        "status": status,
        "exit_code": exit_code,
        "data": data,
        "errors": errors,
    }


def print_envelope(env: dict) -> None:
    sys.stdout.write(json.dumps(env, default=_json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


Body = Callable[[RichReporter], tuple[Any, Callable[[Console], None] | None]]


def run_command(command: str, out: Out, body: Body) -> None:
    """Run one command body; map its outcome to stdout, stderr and the exit code.

    This is the only place where exceptions become exit codes.
    """
    reporter = RichReporter(out)
    try:
        data, render = body(reporter)
    except PartialFailure as exc:
        _fail(command, out, exc, data=exc.data, status="partial")
    except Interrupted as exc:
        _fail(command, out, exc, status="interrupted")
    except LesionaugError as exc:
        _fail(command, out, exc, data=getattr(exc, "data", None))
    except KeyboardInterrupt:
        _fail(command, out, Interrupted("interrupted"), status="interrupted")
    except Exception as exc:  # noqa: BLE001 - the one place an unexpected error is reported
        if out.verbose:
            traceback.print_exc(file=sys.stderr)
        err = LesionaugError(
            f"unexpected error: {type(exc).__name__}: {exc}",
            fix="rerun with -v for the traceback and report it",
        )
        _fail(command, out, err)
    else:
        if out.json:
            print_envelope(envelope(command, "ok", EXIT_OK, data, []))
        elif render is not None:
            render(out.stdout)
        raise typer.Exit(EXIT_OK)


def _fail(command: str, out: Out, exc: LesionaugError, *, data: Any = None, status: str = "error") -> None:
    code = exc.exit_code if exc.exit_code else EXIT_UNEXPECTED
    if out.verbose and exc.__traceback__ is not None and code != EXIT_INTERRUPTED:
        traceback.print_exception(exc, file=sys.stderr)
    out.stderr.print(
        f"lesionaug {command}: error: {exc.one_line()}", style="red", markup=False, highlight=False, soft_wrap=True
    )
    if out.json:
        print_envelope(envelope(command, status, code, data, [exc.as_dict()]))
    raise typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"lesionaug {__version__}\n")
        raise typer.Exit(0)
