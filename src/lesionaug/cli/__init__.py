"""Command-line interface: parses options, calls one core function per command, renders the result.

Heavy libraries (torch, diffusers, onnxruntime) are imported inside command bodies only, so
``lesionaug --help`` and shell completion stay fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lesionaug.cli._app import SCHEMA, app, envelope, print_envelope, version_callback
from lesionaug.cli._click import exceptions as click_exceptions
from lesionaug.errors import EXIT_INTERRUPTED, EXIT_USAGE

# Command modules register themselves on ``app`` when imported, in this order (the order of --help).
# isort: off
from lesionaug.cli import info as _info  # noqa: F401,E402
from lesionaug.cli import masks as _masks  # noqa: F401,E402
from lesionaug.cli import augment as _augment  # noqa: F401,E402
from lesionaug.cli import dataset_ops as _dataset_ops  # noqa: F401,E402
from lesionaug.cli import datalist as _datalist  # noqa: F401,E402
from lesionaug.cli import score as _score  # noqa: F401,E402
from lesionaug.cli import train as _train  # noqa: F401,E402
from lesionaug.cli import evaluate as _evaluate  # noqa: F401,E402
from lesionaug.cli import quality as _quality  # noqa: F401,E402
from lesionaug.cli import compare as _compare  # noqa: F401,E402
from lesionaug.cli import export as _export  # noqa: F401,E402


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Augment a skin-lesion segmentation dataset with generated image/mask pairs.

    Example: lesionaug augment ./isic --n 5000
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args, prog_name="lesionaug", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show(file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_exceptions.UsageError as exc:
        exc.show(file=sys.stderr)
        if "--json" in args:
            command = exc.ctx.info_name if exc.ctx is not None and exc.ctx.parent is not None else "lesionaug"
            err = {"code": "usage", "message": exc.format_message(), "path": None, "fix": "see --help"}
            print_envelope(envelope(command, "error", EXIT_USAGE, None, [err]))
        sys.exit(EXIT_USAGE)
    except click_exceptions.ClickException as exc:
        exc.show(file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("lesionaug: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["SCHEMA", "app", "main"]
