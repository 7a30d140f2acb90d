"""``--config FILE.toml`` for any command: the file fills the options not given on the command line.

Keys are the option names without the leading dashes (``control-scale`` or ``control_scale``),
either at the top level or under a table named after the command (``[augment]``). The command
line overrides the file; an unknown key is an error naming it, never silently ignored. Values from the file go through the same click types as typed options, so a bad value fails with
the same kind of message; keys the command does not have are a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from typer.core import TyperOption

from lesionaug.cli._click import click
from lesionaug.errors import ConfigError


def option_key(name: str) -> str:
    """``--control-scale`` / ``control-scale`` / ``control_scale`` -> ``control_scale``."""
    return name.lstrip("-").replace("-", "_")


def read_option_file(path: Path, allowed: Iterable[str], *, command: str | None = None) -> dict[str, Any]:
    """The options a TOML file sets, keyed by ``option_key``; ``allowed`` are the command's keys."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path, fix="pass an existing TOML file to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file cannot be read ({exc})", path=path, fix="check its permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file is not valid TOML ({exc})", path=path, fix="fix the TOML syntax") from None
    if command is not None and isinstance(data.get(command), dict):
        section = data.pop(command)
        data = {**data, **section}  # the command's own table wins over top-level keys
    allowed_keys = {option_key(a) for a in allowed}
    options: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = option_key(raw_key)
        if key not in allowed_keys:
            near = sorted(allowed_keys)
            raise ConfigError(
                f"unknown key {raw_key!r} in config file",
                path=path,
                fix=f"use only option names: {', '.join(k.replace('_', '-') for k in near)}",
            )
        if isinstance(value, dict):
            raise ConfigError(f"key {raw_key!r} holds a table, not a value", path=path, fix="give it a plain value")
        if key in options:
            raise ConfigError(f"key {raw_key!r} is set twice", path=path, fix="keep one spelling of each option")
        options[key] = value
    return options


NOT_IN_FILES = frozenset({"json_", "quiet", "verbose", "config", "log_file"})
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
        if getattr(param, "multiple", False) and isinstance(raw, str):
            raw = [raw]  # a repeatable option given once: `labels = "metadata.csv"`
        try:
            values[param.name] = param.process_value(ctx, raw)
        except click.exceptions.BadParameter as exc:
            raise ConfigError(f"bad value for {key!r}: {exc.message}", path=path, fix="fix the value in the file") from None
    return values
