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

from lesionaug.cli._app import check_option_length, option_name
from lesionaug.cli._click import click
from lesionaug.errors import ConfigError, UsageError

MAX_TOML_DEPTH = 32  # arrays and inline tables; an option value is a plain value or a short list
MAX_CONFIG_BYTES = 1 << 20  # a config file holds a few options, not a 50 MB prompt template


def option_key(name: str) -> str:
    """``--control-scale`` / ``control-scale`` / ``control_scale`` -> ``control_scale``."""
    return name.lstrip("-").replace("-", "_")


def toml_nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and inline tables in TOML ``text``; brackets inside strings and
    comments do not count. Python's TOML parser recurses once per level, so this is checked first."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                i += 2 if c == '"' and text[i] == "\\" else 1
            i += len(quote) - 1
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file is {path.stat().st_size:,} bytes, over the {MAX_CONFIG_BYTES:,} a "
                              "config file may hold", path=path, fix="keep option values short in a config file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path, fix="pass an existing TOML file to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file cannot be read ({exc})", path=path, fix="check its permissions") from None
    depth = toml_nesting_depth(text)
    if depth > MAX_TOML_DEPTH:
        raise ConfigError(f"config file nests arrays or tables {depth} deep, over the {MAX_TOML_DEPTH} allowed",
                          path=path, fix="option values are plain values or short lists")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file is not valid TOML ({exc})", path=path, fix="fix the TOML syntax") from None
    except RecursionError:  # nesting the depth count did not see (it is a bound, not a TOML parser)
        raise ConfigError("config file nests too deep to read", path=path,
                          fix="option values are plain values or short lists") from None


def read_option_file(path: Path, allowed: Iterable[str], *, command: str | None = None) -> dict[str, Any]:
    """The options a TOML file sets, keyed by ``option_key``; ``allowed`` are the command's keys."""
    path = Path(path)
    data = _parse_toml(path)
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
        except click.exceptions.BadParameter as exc:  # a bad option value, here as on the command line: exit 2
            raise UsageError(f"bad value for {key!r}: {exc.message}", path=path,
                             fix="fix the value in the file") from None
        check_option_length(option_name(param), values[param.name], path=path)
    return values
