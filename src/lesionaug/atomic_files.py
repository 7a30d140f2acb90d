"""Files that appear whole or not at all: write to a temporary name in the same folder, fsync, rename.

A reader (or a resumed run) never sees a half-written file under its final name: the bytes go to
a hidden temporary beside the target and ``os.replace`` swaps it in. Temporaries left behind by a
killed run carry ``TMP_MARK`` in their name so the next run can remove them.

Hard links matter here: an original linked into an output folder shares its inode with the input,
so nothing in lesionaug ever opens an output file for writing in place.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import shutil
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no reflinks
    fcntl = None  # type: ignore[assignment]

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
    except BaseException as exc:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # write() and fsync() name no file (a full disk): say which one
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


LINK_MODES = ("hard", "copy", "reflink")  # how ``place_file`` puts an existing file into an output
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int), a copy-on-write clone of a whole file


def clone_file(src: Path, dst: Path) -> None:
    """Create ``dst`` as a copy-on-write clone of ``src`` (btrfs, XFS, bcachefs, ZFS 2.2+).

    Raises OSError where the filesystem, or the platform, cannot clone (ext4, another filesystem
    than the source's, no FICLONE ioctl); ``dst`` is not left behind then.
    """
    if fcntl is None:
        raise OSError(errno.EOPNOTSUPP, "reflinks need the Linux FICLONE ioctl", str(dst))
    with open(src, "rb") as source:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.ioctl(fd, FICLONE, source.fileno())
        except BaseException:
            os.close(fd)
            os.unlink(dst)
            raise
        os.close(fd)


def place_file(src: Path, dst: Path, how: str = "hard") -> str:
    """Put ``src`` at ``dst`` by a hard link (else a copy), a copy, or a reflink; returns what was done.

    ``how`` is "hard" (a hard link where the filesystem allows, else an atomic copy: "link" or
    "copy" is returned), "copy" (always a separate copy) or "reflink" (a copy-on-write clone; an
    OSError where the filesystem cannot clone, never a silent copy). An existing ``dst`` is replaced
    atomically (the new file gets a temporary name, then is renamed), so a linked original is never
    truncated through its shared inode. Copies and clones keep the source's mode and times.
    """
    if how not in LINK_MODES:
        raise ValueError(f"how must be one of {LINK_MODES}, not {how!r}")
    dst = Path(dst)
    tmp = temporary_name(dst)
    try:
        done = "copy"
        if how == "hard":
            try:
                os.link(src, tmp)
                done = "link"
            except OSError:
                shutil.copyfile(src, tmp)
        elif how == "reflink":
            clone_file(src, tmp)
            done = "reflink"
        else:
            shutil.copyfile(src, tmp)
        if done != "link":
            shutil.copystat(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return done


def link_or_copy(src: Path, dst: Path) -> str:
    """Put ``src`` at ``dst`` by a hard link where the filesystem allows, else by an atomic copy.

    Returns "link" or "copy" (``place_file`` with ``how="hard"``).
    """
    return place_file(src, dst, "hard")


def replace_folder(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` at ``final``: a previous ``final`` is moved aside first and
    removed only after the rename, so ``final`` is at every moment either the old or the new folder."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_temporaries(root: Path) -> int:
    """Delete temporaries a killed run left anywhere under ``root``; returns how many."""
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(TMP_MARK):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed
