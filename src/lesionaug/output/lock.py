"""One writer per output folder: an exclusive OS file lock on ``.lesionaug.lock``, held for the whole run.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on the lock file, so the kernel releases it the moment the
writer dies, however it dies (SIGKILL, OOM, a crash) and whether or not anyone reaps the dead
process. The file also holds the writer's pid, host and command, for the message a second run gets.

Where the filesystem has no working file locks (some network filesystems) the file itself is the
lock: created exclusively, and taken over only when its pid is gone from this host (a zombie counts
as gone). A lock written on another host is never taken over silently, since its pid cannot be
checked from here: ``--break-lock`` clears it, and is refused while the OS lock is held.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Self

from lesionaug.atomic_files import temporary_name
from lesionaug.errors import ConfigError
from lesionaug.formats import LOCK_NAME

FRESH_SECONDS = 10.0  # an empty lock younger than this is being written (O_EXCL fallback), not stale
OS_CHECK = "the OS file lock"
PID_CHECK = "the pid check (this filesystem has no working file locks)"
HOST_CHECK = "the lock file's host (a pid on another host cannot be checked from here)"


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc/PID/stat`` (R, S, Z, ...), or None where unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name in parentheses may hold spaces
    return fields[0] if fields else None


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a running process on this host; a zombie (dead, not yet reaped) is not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    return process_state(pid) not in ("Z", "X", "x")


def read_lock(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _parse(data: bytes) -> dict:
    try:
        holder = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _os_lock(fd: int) -> str:
    """Try an exclusive, non-blocking flock: "held", "busy" (another open file holds it) or "unsupported"."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return "unsupported"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy"
    except OSError:  # ENOLCK, EOPNOTSUPP, ...: the filesystem does not lock
        return "unsupported"
    return "held"


def _describe(holder: dict | None) -> str:
    holder = holder if isinstance(holder, dict) else {}
    where = f" on {holder['host']}" if holder.get("host") not in (None, socket.gethostname()) else ""
    pid = f" (pid {holder['pid']}{where})" if "pid" in holder else ""
    return f"another lesionaug {holder.get('command', 'run')}{pid}"


class OutputLock:
    """Context manager holding ``FOLDER/.lesionaug.lock`` for the duration of a run.

    ``check`` says how the lock is held: ``OS_CHECK`` (flock) or ``PID_CHECK`` (the fallback);
    ``took_over`` is the record of a dead writer's lock this run replaced, if any.
    """

    def __init__(self, folder: Path, command: str = "augment", *, break_lock: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.break_lock = break_lock
        self.took_over: dict | None = None
        self.check: str | None = None
        self._fd = -1
        self._held = False

    def _record(self) -> bytes:
        argv = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500] if sys.argv else ""
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                           "argv": argv, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()

    def acquire(self) -> OutputLock:
        for _attempt in range(3):
            fd = self._open()
            state = _os_lock(fd)
            if state == "unsupported":
                os.close(fd)
                return self._acquire_by_pid()
            if state == "busy":
                holder = _parse(os.pread(fd, 1 << 16, 0))
                os.close(fd)
                raise ConfigError(
                    f"{_describe(holder)} is writing to this folder (found by {OS_CHECK})",
                    path=self.folder,
                    fix="wait for it to finish, or use a different --out (--break-lock cannot clear a lock "
                    "the operating system holds for a live process)",
                )
            if self._locked_file_is_current(fd):
                self._take(fd)
                return self
            os.close(fd)  # a finishing writer unlinked the file between our open and our lock: again
        raise ConfigError("could not take the output lock (another run keeps replacing it)", path=self.path,
                          fix="make sure only one lesionaug run writes to this folder")

    def _open(self) -> int:
        try:  # never through a symlink: the record is written into whatever file this opens
            return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file ({exc.strerror})", path=self.path,
                              fix="make the folder writable; remove the lock file if it is a symlink") from None

    def _locked_file_is_current(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def _take(self, fd: int) -> None:
        """Write our record into the file we hold the OS lock on (a dead writer's record is replaced)."""
        holder = _parse(os.pread(fd, 1 << 16, 0))
        if holder and holder.get("host") not in (None, socket.gethostname()) and not self.break_lock:
            os.close(fd)  # local flock says nothing about a writer on another host of a shared filesystem
            self._refuse_other_host(holder)
        payload = self._record()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        os.fsync(fd)
        self._fd, self._held, self.check = fd, True, OS_CHECK
        self.took_over = holder or None

    def _refuse_other_host(self, holder: dict) -> None:
        raise ConfigError(
            f"{_describe(holder)} locked this folder (found by {HOST_CHECK})",
            path=self.path,
            fix="wait for that run to finish; if it is no longer running, rerun with --break-lock",
        )

    # -- fallback: filesystems without working locks ------------------------------------------------

    def _acquire_by_pid(self) -> OutputLock:
        payload = self._record()
        for _attempt in range(3):
            if self._create(payload):
                self._held, self.check = True, PID_CHECK
                return self
            self._take_over_if_stale()
        raise ConfigError("could not take the output lock (another run keeps creating it)", path=self.path,
                          fix="make sure only one lesionaug run writes to this folder")

    def _create(self, payload: bytes) -> bool:
        """Create the lock holding ``payload``, exclusively; False when it exists already.

        The pid is written to a temporary first and hard-linked to the lock name, so nobody ever
        sees a lock without its pid. Where hard links are not possible, an O_EXCL create is used.
        """
        tmp = temporary_name(self.path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
        return True

    def _take_over_if_stale(self) -> None:
        holder = read_lock(self.path)
        if holder is None:  # released between our create and our read
            return
        pid = holder.get("pid") if isinstance(holder, dict) else None
        host = holder.get("host") if isinstance(holder, dict) else None
        if not self.break_lock:
            if isinstance(pid, int) and host == socket.gethostname() and (pid == os.getpid() or pid_alive(pid)):
                raise ConfigError(
                    f"{_describe(holder)} is writing to this folder (found by {PID_CHECK})",
                    path=self.folder,
                    fix=f"wait for it to finish; if pid {pid} is no lesionaug run (a reused pid), rerun with "
                    "--break-lock",
                )
            if isinstance(pid, int) and host not in (None, socket.gethostname()):
                self._refuse_other_host(holder)
            if not holder and _age(self.path) < FRESH_SECONDS:
                raise ConfigError("another lesionaug run is just starting in this folder", path=self.folder,
                                  fix="wait, or use another --out")
        # Stale (its process is gone, the file is garbage from a crash, or --break-lock): remove it
        # only if it is still the same file, then retry the exclusive create.
        if read_lock(self.path) == holder:
            self.path.unlink(missing_ok=True)
            self.took_over = holder

    # -- release ------------------------------------------------------------------------------------

    def release(self) -> None:
        if not self._held:
            return
        if self._fd >= 0:
            try:
                # Unlink while still locked: a run waiting on this inode sees it is no longer the lock file.
                if self._locked_file_is_current(self._fd):
                    self.path.unlink(missing_ok=True)
            except OSError:  # an output made read-only keeps the file: the OS lock goes with the
                pass  # descriptor all the same, so the next run takes the file over
            finally:
                os.close(self._fd)
                self._fd = -1
        else:
            holder = read_lock(self.path)
            if isinstance(holder, dict) and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
        self._held = False

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
