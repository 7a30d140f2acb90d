"""One writer per output folder: a lock file created with O_EXCL that holds the owner's pid.

A lock whose process is gone (a run killed with SIGKILL, a crashed machine) is stale and taken
over; a live one stops the second run with one line (exit 3). The pid check only means something
on the host that wrote the lock, so a lock from another host is never taken over silently.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Self

from lesionaug.atomic_files import temporary_name
from lesionaug.errors import ConfigError
from lesionaug.formats import LOCK_NAME

FRESH_SECONDS = 10.0  # an empty lock younger than this is being written (O_EXCL fallback), not stale


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


class OutputLock:
    """Context manager holding ``OUT/.lesionaug.lock`` for the duration of a run."""

    def __init__(self, folder: Path, command: str = "augment"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.took_over: dict | None = None
        self._held = False

    def acquire(self) -> OutputLock:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command}
        payload = json.dumps(record).encode()
        for _attempt in range(3):
            if self._create(payload):
                self._held = True
                return self
            self._take_over_if_stale()
        raise ConfigError(
            "could not take the output lock (another run keeps creating it)",
            path=self.path,
            fix="make sure only one lesionaug run writes to this folder",
        )

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
        if isinstance(pid, int) and host == socket.gethostname() and (pid == os.getpid() or pid_alive(pid)):
            raise ConfigError(
                f"another lesionaug {holder.get('command', 'run')} (pid {pid}) is writing to this folder",
                path=self.folder,
                fix="wait for it to finish, or use a different --out",
            )
        if isinstance(pid, int) and host not in (None, socket.gethostname()):
            raise ConfigError(
                f"the folder is locked by pid {pid} on host {host}",
                path=self.path,
                fix="wait for that run to finish, or delete the lock file if it is no longer running",
            )
        if not holder and _age(self.path) < FRESH_SECONDS:
            raise ConfigError(
                "another lesionaug run is just starting in this folder", path=self.folder, fix="wait, or use another --out"
            )
        # Stale: its process is gone (or the file is unreadable garbage from a crash). Remove it
        # only if it is still the same stale file, then retry the exclusive create.
        if read_lock(self.path) == holder:
            self.path.unlink(missing_ok=True)
            self.took_over = holder

    def release(self) -> None:
        if self._held:
            holder = read_lock(self.path)
            if isinstance(holder, dict) and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
