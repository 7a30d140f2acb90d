"""Network weights are read from safetensors only: a pickle weight file in a model folder is refused.

Unpickling runs whatever code the file names, and diffusers falls back to ``torch.load`` for
``*.bin`` weights when no safetensors file is found. So every model folder lesionaug is given
(``augment --model``, ``export``, ``train --base``, ``--controlnet`` and ``--resume``) is checked
here before anything is loaded, and every ``from_pretrained`` call passes ``use_safetensors``
from ``use_safetensors(allow_pickle)``. ``--allow-pickle`` turns both off, for files the user trusts.

    refuse_pickle_weights(model_dir, allow_pickle)   # a one-line ModelError (exit 4) naming the file
"""

from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path

from lesionaug.errors import ModelError
from lesionaug.formats import CHECKPOINT_STATE_FILES

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_DEPTH = 6  # a diffusers folder is two levels deep; hub snapshots and training outputs a few more
FIX = ("convert the weights to safetensors (save_pretrained(..., safe_serialization=True)), "
       "or pass --allow-pickle if you trust the file")


def use_safetensors(allow_pickle: bool) -> bool | None:
    """``use_safetensors=`` for ``from_pretrained``: True (never fall back to pickles) unless allowed."""
    return None if allow_pickle else True


def pickle_weight_files(folder: Path, *, skip: tuple[str, ...] = (CHECKPOINT_STATE_FILES,)) -> list[Path]:
    """Pickle weight files under ``folder``, sorted; ``skip``: relative glob patterns of files to pass
    over (by default the training checkpoints' own state files, which are never unpickled freely).

    Folder symlinks are followed (hub snapshots are made of them) but each real folder is walked once,
    so a link loop ends the walk instead of repeating it.
    """
    folder = Path(folder)
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        try:
            stat = os.stat(here)
        except OSError:
            dirs[:] = []
            continue
        depth = len(Path(here).relative_to(folder).parts)
        if (stat.st_dev, stat.st_ino) in seen or depth > MAX_DEPTH:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(PICKLE_SUFFIXES):
                path = Path(here) / name
                rel = path.relative_to(folder).as_posix()
                if not any(fnmatch(rel, pattern) for pattern in skip):
                    found.append(path)
    return found


def refuse_pickle_weights(folder: str | Path, allow_pickle: bool, *,
                          skip: tuple[str, ...] = (CHECKPOINT_STATE_FILES,)) -> None:
    """A ModelError naming the first pickle weight file under ``folder``, unless ``allow_pickle``."""
    folder = Path(folder)
    if allow_pickle or not folder.is_dir():
        return
    found = pickle_weight_files(folder, skip=skip)
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise ModelError(
            f"pickle weights ({found[0].relative_to(folder).as_posix()}{more}) can run code when loaded; "
            "lesionaug reads safetensors only",
            path=found[0],
            fix=FIX,
        )
