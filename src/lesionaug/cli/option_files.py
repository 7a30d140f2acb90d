"""``--config FILE.toml`` for any command: the file fills the options not given on the command line.

Values from the file go through the same click types as typed options, so a bad value fails with
the same kind of message; keys the command does not have are a ``ConfigError`` naming the key.
"""

from __future__ import annotations

from pathlib import Path

from typer.core import TyperOption

from lesionaug.cli._click import click
from lesionaug.option_file import option_key, read_option_file

NOT_IN_FILES = frozenset({"json_", "quiet", "verbose", "config"})
_DEFAULTS = (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)


def file_options(ctx: click.Context) -> dict[str, click.Parameter]:
    """Option key (``control_scale``) -> click parameter, for the options a config file may set."""
    params: dict[str, click.Parameter] = {}
    for param in ctx.command.params:
        if not isinstance(param, TyperOption) or param.name in NOT_IN_FILES:
            continue
        long_names = [o for o in param.opts if o.startswith("--")]
        params[option_key(long_names[0] if long_names else param.name)] = param
    return params


def apply_config_file(ctx: click.Context, path: Path | None, command: str) -> dict:
    """The command's parameter values: the command line first, then the file, then the defaults."""
    values = dict(ctx.params)
    if path is None:
        return values
    params = file_options(ctx)
    from_file = read_option_file(path, params, command=command)
    for key, raw in from_file.items():
        param = params[key]
        source = ctx.get_parameter_source(param.name)
        if source is not None and source not in (_DEFAULTS):
            continue  # given on the command line (or by environment): it wins
        try:
            values[param.name] = param.process_value(ctx, raw)
        except click.exceptions.BadParameter as exc:
            from lesionaug.errors import ConfigError

            raise ConfigError(f"bad value for {key!r}: {exc.message}", path=path, fix="fix the value in the file") from None
    return values
