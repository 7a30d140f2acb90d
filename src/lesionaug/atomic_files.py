"""Files that appear whole or not at all: write to a temporary name in the same folder, fsync, rename.

A reader (or a resumed run) never sees a half-written file under its final name: the bytes go to
a hidden temporary beside the target and ``os.replace`` swaps it in. Temporaries left behind by a
killed run carry ``TMP_MARK`` in their name so the next run can remove them.

Hard links matter here: an original linked into an output folder shares its inode with the input,
so nothing in lesionaug ever opens an output file for writing in place.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import threading
from pathlib import Path

from lesionaug.formats import TMP_MARK

_counter = itertools.count()
_counter_lock = threading.Lock()


def temporary_name(path: Path) -> Path:
    """A unique hidden name beside ``path`` (same folder, so ``os.replace`` is atomic)."""
    with _counter_lock:
        n = next(_counter)
    return path.with_name(f"{TMP_MARK}{os.getpid()}-{n}-{path.name}")


def is_temporary(path: Path) -> bool:
    return path.name.startswith(TMP_MARK)


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``."""
    path = Path(path)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(src: Path, dst: Path) -> str:
    """Put ``src`` at ``dst`` by a hard link where the filesystem allows, else by an atomic copy.

    Returns "link" or "copy". An existing ``dst`` is replaced atomically (link to a temporary
    name, then rename), so a linked original is never truncated through its shared inode.
    """
    dst = Path(dst)
    tmp = temporary_name(dst)
    try:
        os.link(src, tmp)
        how = "link"
    except OSError:
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)
        how = "copy"
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return how


def remove_temporaries(root: Path) -> int:
    """Delete temporaries a killed run left anywhere under ``root``; returns how many."""
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(TMP_MARK):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed
