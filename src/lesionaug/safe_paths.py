"""Paths read from lesionaug's own files stay inside the folder those files describe.

A manifest line, a run record, an engine card or a label file names files relative to its folder.
Such a file can be edited or crafted (a shard copied from another machine, an engine downloaded), so
every path read from one goes through ``resolve_inside`` before anything is opened, hashed, linked
or removed: no absolute path, no ``..``, and no symlink on the way that leads out of the folder.

    image = resolve_inside(out, entry["image"], source=out / MANIFEST_NAME, where="manifest line 3")
"""

from __future__ import annotations

import re
from pathlib import Path, PureWindowsPath

from lesionaug.errors import ConfigError

_SEPARATORS = re.compile(r"[\\/]")
DEFAULT_FIX = "restore the file from the run that wrote it; lesionaug reads and writes only inside the folder"


def _lexical_problem(rel: object) -> str | None:
    """Why ``rel`` cannot be a path inside a folder, judged from the text alone (None: it may be)."""
    if not isinstance(rel, str) or not rel.strip():
        return "is not a file name"
    if "\0" in rel:
        return "holds a NUL character"
    if rel.startswith(("/", "\\")) or PureWindowsPath(rel).drive:
        return "is an absolute path"
    if ".." in _SEPARATORS.split(rel):
        return "climbs out with '..'"
    return None


def resolve_inside(folder: Path, rel: object, *, source: Path, where: str, fix: str = DEFAULT_FIX) -> Path:
    """``folder/rel`` with every symlink resolved, when it lies inside ``folder``; else a ConfigError.

    ``source`` is the file the path was read from and ``where`` says where in it ("manifest line 3",
    "originals[2]"); both go into the one-line message (exit 3). The file need not exist yet.
    """
    shown = repr(rel)[:120]
    problem = _lexical_problem(rel)
    if problem is None:
        root = Path(folder).resolve()
        resolved = (root / str(rel)).resolve()
        if resolved != root and root not in resolved.parents:
            problem = f"leads outside the folder through a symlink (to {str(resolved)[:120]})"
        elif resolved == root:
            problem = "names the folder itself"
        else:
            return resolved
    raise ConfigError(f"{where} names {shown}, which {problem}", path=source, fix=fix)

