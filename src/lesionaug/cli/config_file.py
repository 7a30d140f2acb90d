"""``--config FILE.toml`` and ``./lesionaug.toml``: option values from a file, one table per command.

One project file serves a whole build:

    seed = 1                    # top level: every command that has --seed
    [augment]
    n = 5000
    denoise-steps = 30
    [train]
    train-steps = 20000

Keys are option names without the leading dashes (``denoise-steps`` or ``denoise_steps``). A
command reads the top level and its own table (which wins); other commands' tables are skipped. A
key no command has, a key in a command's table that the command does not have, or a table named
after no command is a ``ConfigError`` naming the key and the file, never silently ignored. A
renamed option's old name still works, with one deprecation line. Values go through the same click
types as typed options; a bad one is a ``ConfigError`` naming the file.

Where a value comes from: the command line, then ``LESIONAUG_<COMMAND>_<OPTION>`` and
``LESIONAUG_<OPTION>`` (not for ``NOT_FROM_ENVIRONMENT``), then the file (``--config``, else ``lesionaug.toml`` in the working
directory), then the default. The file's values become click's ``default_map``, so click itself
applies that order and a required option may come from the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperOption

from lesionaug.cli._click import click
from lesionaug.cli.option_bounds import check_option_length, option_name
from lesionaug.cli.renames import renamed_keys, warn_deprecated
from lesionaug.errors import ConfigError
from lesionaug.formats import PROJECT_CONFIG_NAME

# Never from a file or the environment: how this one invocation reports, and the file itself.
NOT_IN_FILES = frozenset({"json_", "quiet", "verbose", "config", "log_file", "help"})
ENV_PREFIX = "LESIONAUG"
# Never from the environment, which child processes and CI jobs inherit unseen: options that run
# code from model files or replace and unlock outputs are typed, or written in a project's file.
NOT_FROM_ENVIRONMENT = frozenset({"allow_pickle", "force", "break_lock"})

MAX_TOML_DEPTH = 32  # arrays and inline tables; an option value is a plain value or a short list
MAX_CONFIG_BYTES = 1 << 20  # a config file holds a few options, not a 50 MB prompt template


def option_key(name: str) -> str:
    """``--control-scale`` / ``control-scale`` / ``control_scale`` -> ``control_scale``."""
    return name.lstrip("-").replace("-", "_")


def env_names(command: str, key: str) -> list[str]:
    """The environment variables of one option, the command's own first."""
    option = key.upper()
    return [f"{ENV_PREFIX}_{option_key(command).upper()}_{option}", f"{ENV_PREFIX}_{option}"]


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


def file_options(command: click.Command) -> dict[str, click.Parameter]:
    """Option key (``control_scale``) -> click parameter, for the options a file may set."""
    params: dict[str, click.Parameter] = {}
    for param in command.params:
        if not isinstance(param, TyperOption) or param.name in NOT_IN_FILES or param.hidden:
            continue
        long_names = [o for o in param.opts if o.startswith("--")]
        params[option_key(long_names[0] if long_names else param.name)] = param
    return params


def read_toml(path: Path) -> dict[str, Any]:
    return _parse_toml(Path(path))


def command_entries(
    data: Mapping[str, Any],
    command: str,
    keys: Iterable[str],
    *,
    path: Path,
    commands: Mapping[str, set[str]] | None = None,
    renamed: Mapping[str, str] | None = None,
    deprecated: Callable[[str, str], None] = lambda old, new: None,
) -> dict[str, Any]:
    """The raw values the file sets for ``command``, keyed by option key.

    ``keys`` are the command's option keys; ``commands`` maps every command to its keys (so a
    top-level key another command has, or another command's table, is skipped); ``renamed`` maps
    old keys to new ones (each use reported through ``deprecated``).
    """
    keys = set(keys)
    commands = dict(commands or {command: keys})
    renamed = dict(renamed or {})
    every_key = set().union(*commands.values()) if commands else keys
    table_names = {option_key(name): name for name in commands}
    top_items: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for raw_key, value in data.items():
        if isinstance(value, dict):
            name = option_key(raw_key)
            if name == option_key(command):
                own = _entries(value, keys, renamed, path, deprecated, table=raw_key)
            elif name not in table_names:
                raise ConfigError(
                    f"table [{raw_key}] names no command",
                    path=path,
                    fix=f"name tables after commands: {', '.join(sorted(commands))}",
                )
            continue
        key = renamed.get(option_key(raw_key), option_key(raw_key))
        if key in keys:
            top_items[raw_key] = value
        elif option_key(raw_key) not in every_key:
            raise ConfigError(
                f"unknown key {raw_key!r} in config file",
                path=path,
                fix="use option names without dashes, e.g. denoise-steps = 30 (see lesionaug COMMAND --help)",
            )
    top = _entries(top_items, keys, renamed, path, deprecated)
    return {**top, **own}  # the command's own table wins over top-level keys


def _entries(
    items: Mapping[str, Any],
    keys: set[str],
    renamed: Mapping[str, str],
    path: Path,
    deprecated: Callable[[str, str], None],
    *,
    table: str | None = None,
) -> dict[str, Any]:
    where = f" in [{table}]" if table else ""
    entries: dict[str, Any] = {}
    for raw_key, value in items.items():
        key = option_key(raw_key)
        if key in renamed:
            deprecated(raw_key, renamed[key].replace("_", "-"))
            key = renamed[key]
        if key not in keys:
            raise ConfigError(
                f"unknown key {raw_key!r}{where} in config file",
                path=path,
                fix=f"use only option names: {', '.join(sorted(k.replace('_', '-') for k in keys))}",
            )
        if isinstance(value, dict):
            raise ConfigError(f"key {raw_key!r} holds a table, not a value", path=path, fix="give it a plain value")
        if key in entries:
            raise ConfigError(f"key {raw_key!r} is set twice", path=path, fix="keep one spelling of each option")
        entries[key] = value
    return entries


def config_path(given: Path | None, cwd: Path | None = None) -> Path | None:
    """``--config``'s file, else ``lesionaug.toml`` in the working directory when present."""
    if given is not None:
        return Path(given)
    project = (cwd or Path.cwd()) / PROJECT_CONFIG_NAME
    return project if project.is_file() else None


def default_map(
    ctx: click.Context,
    path: Path,
    entries: Mapping[str, Any],
    params: Mapping[str, click.Parameter],
) -> dict[str, Any]:
    """Parameter name -> value, each checked by its option's own click type."""
    values: dict[str, Any] = {}
    for key, raw in entries.items():
        param = params[key]
        if getattr(param, "multiple", False) and isinstance(raw, str):
            raw = [raw]  # a repeatable option given once: `labels = "metadata.csv"`
        try:
            values[param.name] = param.process_value(ctx, raw)
        except click.exceptions.BadParameter as exc:  # the file does not parse as the option's type: exit 3
            raise ConfigError(
                f"bad value for {key.replace('_', '-')!r}: {exc.message}", path=path, fix="fix the value in the file"
            ) from None
        check_option_length(option_name(param), values[param.name], path=path)
    return values


def command_keys(ctx: click.Context) -> dict[str, set[str]]:
    """Every command's option keys, old spellings included (a shared file may set any of them)."""
    group = ctx.find_root().command
    commands = getattr(group, "commands", None) or {ctx.command.name: ctx.command}
    return {name: set(file_options(cmd)) | set(renamed_keys(name)) for name, cmd in commands.items()}


def load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``--config``'s callback (eager, so it runs first): the file's values become click's defaults."""
    path = config_path(value)
    if path is None:
        return value
    name = ctx.command.name or ""
    params = file_options(ctx.command)
    entries = command_entries(
        read_toml(path),
        name,
        params,
        path=path,
        commands=command_keys(ctx),
        renamed=renamed_keys(name),
        deprecated=lambda old, new: warn_deprecated(name, f"{old} in {path}", new),
    )
    ctx.default_map = {**(ctx.default_map or {}), **default_map(ctx, path, entries, params)}
    return value
