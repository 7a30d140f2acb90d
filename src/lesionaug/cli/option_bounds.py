"""The one bound on text option values, from the command line, a config file or the environment.

A 50 MB ``--prompt-template`` would be copied into every manifest line; paths are left to the
operating system, whose refusal (a name over 255 bytes) is a ``ResourceError`` naming the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lesionaug.cli._click import click
from lesionaug.errors import UsageError

MAX_OPTION_CHARS = 4096  # the longest text option value: a prompt template is a sentence, a prefix a word


def option_name(param: click.Parameter) -> str:
    """``--prompt-template`` for an option, ``DATASET`` for an argument."""
    long_names = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
    return long_names[0] if long_names else (param.name or "value").upper()


def check_option_length(name: str, value: Any, path: Path | None = None) -> None:
    """Refuse a text value (or a list of them) longer than ``MAX_OPTION_CHARS`` with a usage error
    naming the option; ``path``: the config file the value came from."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, str) and len(item) > MAX_OPTION_CHARS:
            raise UsageError(
                f"{name} is {len(item):,} characters long, over the {MAX_OPTION_CHARS:,} an option value may hold",
                path=path,
                fix=f"pass a shorter {name}",
            )


def check_option_lengths(ctx: click.Context | None) -> None:
    """Every text value of the command ``ctx`` runs, as click parsed it, within ``MAX_OPTION_CHARS``."""
    if ctx is None:
        return
    for param in ctx.command.params:
        check_option_length(option_name(param), ctx.params.get(param.name or ""))
