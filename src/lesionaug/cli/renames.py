"""Options renamed so one word means one thing; their old spellings still work, with one stderr line.

``--steps`` meant denoising steps (augment, quality), training steps (train) and segmenter
optimizer steps (evaluate); sizes were ``--size``, ``--image-size``, ``--seg-image-size`` and
``--resolution``. The old spellings are rewritten to the new ones before parsing, on the command
line and as config-file keys, each use saying ``--steps is deprecated; use --denoise-steps``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from lesionaug.errors import UsageError

# command -> old spelling -> new spelling
RENAMED_OPTIONS: Mapping[str, Mapping[str, str]] = {
    "augment": {"--steps": "--denoise-steps"},
    "quality": {
        "--steps": "--denoise-steps",
        "--seg-image-size": "--seg-size",
        "--device": "--seg-device",
    },
    "train": {"--steps": "--train-steps", "--resolution": "--size"},
    "evaluate": {
        "--steps": "--seg-steps",
        "--epochs": "--seg-epochs",
        "--image-size": "--seg-size",
        "--arch": "--seg-arch",
        "--channels": "--seg-channels",
        "--batch-size": "--seg-batch-size",
        "--device": "--seg-device",
    },
}
# Commands whose output folder was a positional argument: now --out/-o, the first argument still
# accepted with a deprecation line.
POSITIONAL_OUT = ("demo-data", "merge")


def deprecation_line(command: str, old: str, new: str) -> str:
    return f"lesionaug {command}: {old} is deprecated; use {new}"


def warn_deprecated(command: str, old: str, new: str) -> None:
    sys.stderr.write(deprecation_line(command, old, new) + "\n")


def renamed_keys(command: str) -> dict[str, str]:
    """Old option key -> new option key (``steps`` -> ``denoise_steps``), for config files."""
    return {
        old.lstrip("-").replace("-", "_"): new.lstrip("-").replace("-", "_")
        for old, new in RENAMED_OPTIONS.get(command, {}).items()
    }


def rewrite_renamed(
    command: str, args: list[str], warn: Callable[[str, str, str], None] = warn_deprecated
) -> list[str]:
    """The arguments with each old option spelling (``--steps 5``, ``--steps=5``) made new."""
    table = RENAMED_OPTIONS.get(command, {})
    if not table:
        return list(args)
    words: list[str] = []
    for i, word in enumerate(args):
        if word == "--":
            words += args[i:]
            break
        name, eq, value = word.partition("=")
        if name in table:
            warn(command, name, table[name])
            word = table[name] + eq + value
        words.append(word)
    return words


def out_folder(command: str, option: Path | None, argument: Path | None) -> Path:
    """The output folder of a command that took it as its first argument: ``--out``, or that argument."""
    if option is not None and argument is not None:
        raise UsageError("the output folder is given twice (as --out and as an argument)", fix="pass it once, as --out")
    if argument is not None:
        warn_deprecated(command, "the output folder as an argument", "--out OUT")
        return argument
    if option is None:
        raise UsageError("--out is required", fix=f"pass --out FOLDER (lesionaug {command} --out FOLDER ...)")
    return option
