"""The Typer app, the option set every command shares, and the one place errors become exit codes.

Every command is a ``LesionaugCommand``: old option spellings are rewritten (``renames.py``), each
option also reads ``LESIONAUG_<COMMAND>_<OPTION>`` and ``LESIONAUG_<OPTION>``, ``--config`` (or
``./lesionaug.toml``) fills what neither gives (``config_file.py``), and an error while parsing
ends like any other: one line, its exit code, the envelope under ``--json``.

A command body is a function that returns ``(data, render)``: ``data`` is what ``--json`` prints
inside the envelope, ``render`` draws the human view on stdout. ``run_command`` does the rest.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, Callable, Iterator

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
from typer.core import TyperCommand

from lesionaug import __version__
from lesionaug.cli._click import click, click_globals
from lesionaug.cli._invocation import resume_command
from lesionaug.cli.config_file import NOT_FROM_ENVIRONMENT, env_names, file_options, load_config
from lesionaug.cli.option_bounds import check_option_lengths
from lesionaug.cli.renames import rewrite_renamed
from lesionaug.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    MAX_ERROR_LINE,
    ConfigError,
    Interrupted,
    LesionaugError,
    PartialFailure,
    ResourceError,
    UsageError,
    os_error_in,
)
from lesionaug.formats import RESULT_SCHEMA as SCHEMA
from lesionaug.progress import PlainTask, progress_interval


class LesionaugCommand(TyperCommand):
    """A command whose options read renamed spellings, the environment and the config file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, param in file_options(self).items():
            if param.envvar is None and key not in NOT_FROM_ENVIRONMENT:
                param.envvar = env_names(self.name or "", key)
            param.show_envvar = False

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        words = rewrite_renamed(self.name or "", list(args))
        try:
            return super().parse_args(ctx, list(words))  # the parser consumes its list
        except LesionaugError as exc:  # a bad config file: reported as the command's own error
            verbose = "-v" in words or "--verbose" in words
            _fail(self.name or "lesionaug", Out(json="--json" in words, verbose=verbose), exc)
            raise  # _fail always exits; this keeps type checkers content
        except click.exceptions.UsageError as exc:  # unknown option, bad value, missing argument
            if ctx.resilient_parsing or isinstance(exc, click.exceptions.NoArgsIsHelpError):
                raise
            message = exc.format_message().replace("Value error, ", "")
            error = UsageError(message, fix=f"see lesionaug {self.name} --help")
            _fail(self.name or "lesionaug", Out(json="--json" in words), error)
            raise


class LesionaugTyper(typer.Typer):
    """The app: every command it registers is a ``LesionaugCommand``."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or LesionaugCommand, **kwargs)


app = LesionaugTyper(
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
# Long jobs can copy their progress, warnings and errors into a file, as plain timestamped lines.
LogFileOpt = Annotated[
    Path | None,
    typer.Option("--log-file", help="Also append progress lines, warnings and errors to this file (plain text)."),
]
# Every command takes option values from a TOML file (eager: it runs before the other options).
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE.toml",
        is_eager=True,
        callback=load_config,
        help="TOML file of option values: top-level keys and a table named after this command (default: "
        "./lesionaug.toml when present). The command line, then LESIONAUG_<OPTION> variables, win over it.",
    ),
]
# Every command that reads a dataset takes external label tables joined by image id.
LabelTablesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--labels",
        help="Label table joined onto the images by id: an ISIC Archive metadata export, the ISIC 2019 "
        "ground truth or metadata, the ISIC 2017 Part 3 table, the HAM10000 metadata, or any CSV with an "
        "image id column (repeatable; docs/label-tables.md).",
    ),
]


@dataclass(frozen=True)
class Out:
    """Where output goes for one command invocation."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False
    log_file: Path | None = None

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


class _Tasks:
    """One task shown in several places at once (a Rich bar, plain lines, the log file)."""

    def __init__(self, tasks: list[Any]):
        self.tasks = tasks

    def advance(self, n: int = 1, **fields: Any) -> None:
        for task in self.tasks:
            task.advance(n, **fields)

    def update(self, **fields: Any) -> None:
        for task in self.tasks:
            task.update(**dict(fields))


class RichReporter:
    """Progress and info lines on stderr: Rich bars on a terminal, plain lines at a steady interval
    elsewhere (SLURM and CI logs; ``LESIONAUG_PROGRESS_INTERVAL`` seconds, default 30); silent with
    ``--quiet``. With ``--log-file`` every line also goes to that file, timestamped, quiet or not."""

    def __init__(self, out: Out):
        self.out = out
        self.console = out.stderr
        self.plain = not self.console.is_terminal
        self.interval = progress_interval()
        self.log: IO[str] | None = None

    def open_log(self) -> None:
        if self.out.log_file is None:
            return
        try:
            path = Path(self.out.log_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close_log
        except OSError as exc:
            raise ConfigError(
                f"cannot open the log file ({exc.strerror or exc})", path=self.out.log_file, fix="pass a writable path"
            ) from None

    def close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_line(self, line: str) -> None:
        if self.log is not None:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            self.log.write(f"{stamp} {line}\n")
            self.log.flush()

    def _plain_line(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_Tasks]:
        plain: list[PlainTask] = []
        if self.log is not None:
            plain.append(PlainTask(description, total, self.log_line, self.interval))
        if self.plain and not self.out.quiet:
            plain.append(PlainTask(description, total, self._plain_line, self.interval))
        if self.plain or self.out.quiet:
            try:
                yield _Tasks(list(plain))
            finally:
                for task in plain:
                    task.close()
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        try:
            with progress:
                task_id = progress.add_task(description, total=total, info="")
                yield _Tasks([_RichTask(progress, task_id), *plain])
        finally:
            for task in plain:
                task.close()

    def info(self, message: str) -> None:
        self.log_line(message)
        if not self.out.quiet:
            self.console.print(message, markup=False, highlight=False)

    def warn(self, message: str) -> None:
        self.log_line(f"warning: {message}")
        if not self.out.quiet:
            self.console.print(f"warning: {message}", style="yellow", markup=False, highlight=False)

    def debug(self, message: str) -> None:
        if self.out.verbose:
            self.log_line(message)
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

def run_command(command: str, out: Out, body: Body, *, resume: str | None = None) -> None:
    """Run one command body; map its outcome to stdout, stderr and the exit code.

    This is the only place where exceptions become exit codes. ``resume`` says how an interrupted
    run of this command continues (``_invocation.RESUME_SAME`` or ``RESUME_FLAG``): Ctrl-C, and
    SIGTERM as batch schedulers send it at a time limit, then end with that command line.
    """
    reporter = RichReporter(out)
    try:
        check_option_lengths(click_globals.get_current_context(silent=True))
        reporter.open_log()
        with _sigterm_interrupts(resume is not None):
            data, render = body(reporter)
    except PartialFailure as exc:
        _fail(command, out, exc, reporter, data=exc.data, status="partial")
    except Interrupted as exc:
        _fail(command, out, _with_resume(exc, resume), reporter, status="interrupted")
    except LesionaugError as exc:
        _fail(command, out, exc, reporter, data=getattr(exc, "data", None))
    except KeyboardInterrupt:
        _fail(command, out, _with_resume(Interrupted("interrupted"), resume), reporter, status="interrupted")
    except Exception as exc:  # noqa: BLE001 - the one place an unexpected error is reported
        if out.verbose:
            traceback.print_exc(file=sys.stderr)
        os_error = os_error_in(exc)
        if os_error is not None:  # a file or folder the OS refused (read-only, full, name too long): exit 3
            _fail(command, out, ResourceError.from_os_error(os_error), reporter)
        err = LesionaugError(
            f"unexpected error: {type(exc).__name__}: {exc}",
            fix="rerun with -v for the traceback and report it",
        )
        _fail(command, out, err, reporter)
    else:
        reporter.log_line(f"lesionaug {command}: done")
        reporter.close_log()
        if out.json:
            print_envelope(envelope(command, "ok", EXIT_OK, data, []))
        elif render is not None:
            render(out.stdout)
        raise typer.Exit(EXIT_OK)


def _with_resume(exc: Interrupted, resume: str | None) -> Interrupted:
    """The interruption, its fix ending with the command line that continues the run."""
    command = resume_command(resume)
    if command is not None:
        exc.fix = f"{exc.fix}: {command}" if exc.fix else f"resume with: {command}"
    return exc


@contextmanager
def _sigterm_interrupts(enabled: bool) -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while a resumable command runs (main thread only)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(
    command: str,
    out: Out,
    exc: LesionaugError,
    reporter: RichReporter | None = None,
    *,
    data: Any = None,
    status: str = "error",
) -> None:
    code = exc.exit_code if exc.exit_code else EXIT_UNEXPECTED
    if out.verbose and exc.__traceback__ is not None and code != EXIT_INTERRUPTED:
        traceback.print_exception(exc, file=sys.stderr)
    prefix = f"lesionaug {command}: error: "
    line = prefix + exc.one_line(MAX_ERROR_LINE - len(prefix))
    out.stderr.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
    if reporter is not None:
        reporter.log_line(line)
        reporter.close_log()
    if out.json:
        print_envelope(envelope(command, status, code, data, [exc.as_dict()]))
    raise typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"lesionaug {__version__}\n")
        raise typer.Exit(0)
