"""The command line a user typed, rebuilt from click's parsed parameters: what Ctrl-C says to rerun.

Only the parameters given on the command line are written back (defaults and config-file values
stay where they were), arguments first, in the command's own order. ``resume_command`` turns it
into the command that continues the run: the same one for ``augment`` (it resumes by itself), with
``--resume`` instead of ``--force`` for ``train``.
"""

from __future__ import annotations

import shlex
from typing import Any

from lesionaug.cli._click import click, click_globals

RESUME_SAME = "same"  # rerunning the same command resumes (augment)
RESUME_FLAG = "--resume"  # the command resumes with --resume (train)


def _option_words(param: Any, value: Any) -> list[str]:
    name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    if getattr(param, "is_flag", False):
        if param.secondary_opts:
            return [name] if value else [param.secondary_opts[0]]
        return [name] if value else []
    values = value if getattr(param, "multiple", False) else [value]
    return [word for v in values for word in (name, str(v))]


def invocation_words(ctx: Any) -> list[str]:
    """``[command, *arguments, *options]`` as given on the command line."""
    arguments: list[str] = []
    options: list[str] = []
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            arguments += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        else:
            options += _option_words(param, value)
    return [ctx.info_name, *arguments, *options]


def current_context() -> Any:
    """The click context of the running command (None outside one)."""
    return click_globals.get_current_context(silent=True)


def resume_command(resume: str | None) -> str | None:
    """The command that continues an interrupted run of the current command, or None."""
    ctx = current_context()
    if ctx is None or resume is None:
        return None
    words = invocation_words(ctx)
    if resume == RESUME_FLAG:
        words = [w for w in words if w != "--force"]
        if RESUME_FLAG not in words:
            words.append(RESUME_FLAG)
    return "lesionaug " + shlex.join(words)
