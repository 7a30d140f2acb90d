"""``lesionaug-manifest.jsonl``: one JSON line per synthetic pair, enough to regenerate it bit for bit.

Lines are appended while a run writes (in the order pairs finish), each one only after both of
its files are in place, with a single ``write`` so a killed run leaves whole lines; a torn last
line from a power loss is ignored on reading. When a run completes the manifest is rewritten
atomically in job order, so a resumed run ends with the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from lesionaug.atomic_files import write_text_atomic
from lesionaug.errors import ConfigError
from lesionaug.safe_paths import resolve_inside

# The keys of every manifest line, in the order they are written.
MANIFEST_KEYS: tuple[str, ...] = (
    "id",
    "index",
    "image",
    "mask",
    "sha256",
    "prompt",
    "labels",
    "mask_seed",
    "mask_source",
    "noise_seed",
    "scheduler",
    "steps",
    "guidance",
    "control_scale",
    "model_hash",
    "engine_hash",
    "version",
)
# Keys a line carries after those when ``augment --min-fidelity`` checked its pair: the Dice of the
# fidelity segmenter against the pair's mask, which attempt was kept (1 = the plan's noise seed) and
# the noise seed that attempt used.
FIDELITY_KEYS: tuple[str, ...] = ("fidelity", "attempt", "attempt_noise_seed")


_FIX = "restore the manifest, or rerun with --force to regenerate the synthetic pairs"


def manifest_line(entry: dict) -> str:
    """One manifest line (with its newline) with exactly ``MANIFEST_KEYS`` in their order (then
    ``FIDELITY_KEYS``, all or none)."""
    keys = set(entry)
    if not _has_manifest_keys(keys):
        missing = sorted(set(MANIFEST_KEYS) - keys)
        extra = sorted(keys - set(MANIFEST_KEYS) - set(FIDELITY_KEYS))
        raise ValueError(f"manifest entry keys differ: missing {missing}, unexpected {extra}")
    ordered = {k: entry[k] for k in MANIFEST_KEYS + FIDELITY_KEYS if k in entry}
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":")) + "\n"


class ManifestAppender:
    """Appends whole lines to the manifest from any thread."""

    def __init__(self, path: Path, *, durable: bool = True):
        self.path = Path(path)
        self.durable = durable
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, entry: dict) -> None:
        data = manifest_line(entry).encode("utf-8")
        with self._lock:
            try:
                os.write(self._fd, data)  # one write: a killed process leaves the line whole or absent
                if self.durable:
                    os.fsync(self._fd)
            except OSError as exc:
                exc.filename = exc.filename or str(self.path)  # a full disk names no file: this one
                raise

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest_lines(path: Path) -> list[tuple[int, dict]]:
    """(line number, entry) of every whole line of a manifest (a torn, unterminated last line is dropped).

    Each line's ``image`` and ``mask`` must lie inside the manifest's folder (``safe_paths``), so no
    reader ever follows a crafted line out of the folder.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and not text.endswith("\n"):
        lines = lines[:-1]  # unterminated: written by a process that died mid-line
    entries: list[tuple[int, dict]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ConfigError(f"manifest line {number} is not JSON", path=path, fix=_FIX) from None
        if not isinstance(entry, dict) or not _has_manifest_keys(set(entry)):
            raise ConfigError(f"manifest line {number} does not have the manifest keys", path=path, fix=_FIX)
        _check_line(path, number, entry)
        entries.append((number, entry))
    return entries


def _has_manifest_keys(keys: set) -> bool:
    return keys in (set(MANIFEST_KEYS), set(MANIFEST_KEYS) | set(FIDELITY_KEYS))


def _check_line(path: Path, number: int, entry: dict) -> None:
    if not isinstance(entry["index"], int) or isinstance(entry["index"], bool) or entry["index"] < 0:
        raise ConfigError(f"manifest line {number} has no job index", path=path, fix=_FIX)
    for key in ("image", "mask"):
        resolve_inside(path.parent, entry[key], source=path, where=f"manifest line {number} ({key})", fix=_FIX)


def read_manifest(path: Path) -> list[dict]:
    """All whole lines of a manifest, checked as ``read_manifest_lines`` says."""
    return [entry for _number, entry in read_manifest_lines(path)]


def latest_by_index(entries: Iterable[dict]) -> dict[int, dict]:
    """One entry per job index; a later line for the same job (a rewrite) wins."""
    out: dict[int, dict] = {}
    for entry in entries:
        out[int(entry["index"])] = entry
    return out


def write_manifest_sorted(path: Path, entries: Iterable[dict]) -> None:
    """Rewrite the manifest atomically, one line per job, in job order."""
    by_index = latest_by_index(entries)
    text = "".join(manifest_line(by_index[k]) for k in sorted(by_index))
    write_text_atomic(Path(path), text)
