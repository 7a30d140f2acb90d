"""The output lock: an OS file lock the kernel drops when its writer dies, and the pid/host fallback.

Killed writers are left unreaped here on purpose: a zombie is what a container without an init, or a
CI runner whose supervisor died, leaves behind, and it must never count as a live writer.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lesionaug.errors import ConfigError
from lesionaug.formats import LOCK_NAME
from lesionaug.output import lock as lock_module
from lesionaug.output.lock import OutputLock, pid_alive, process_state

HOLD = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.write(fd, sys.argv[2].encode())\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def kill_unreaped(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and wait until it is a zombie, without reaping it (no wait(), no poll())."""
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.time() + 30
    while process_state(proc.pid) != "Z" and time.time() < deadline:
        time.sleep(0.01)
    assert process_state(proc.pid) == "Z"


@pytest.fixture
def children():
    """Processes a test starts; reaped at the end, whatever state the test left them in."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def hold_os_lock(folder: Path, children: list, record: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / LOCK_NAME), json.dumps(record)],
                            stdout=subprocess.PIPE, text=True)
    children.append(proc)
    assert proc.stdout.readline().strip() == "held"
    return proc


def write_record(folder: Path, pid: int, host: str | None = None) -> None:
    record = {"pid": pid, "host": host or socket.gethostname(), "command": "augment"}
    (folder / LOCK_NAME).write_text(json.dumps(record))


@pytest.fixture
def no_os_locks(monkeypatch):
    """A filesystem where flock does not work (some network filesystems): the pid check decides."""
    monkeypatch.setattr(lock_module, "_os_lock", lambda fd: "unsupported")


def test_a_zombie_or_a_reaped_pid_is_not_alive(children):
    proc = sleeper()
    children.append(proc)
    assert pid_alive(proc.pid) and process_state(proc.pid) in ("S", "R", "D")  # D: a live process waiting on the disk
    kill_unreaped(proc)
    os.kill(proc.pid, 0)  # what the old check asked: the zombie still answers
    assert not pid_alive(proc.pid)
    proc.wait()
    assert not pid_alive(proc.pid) and process_state(proc.pid) is None
    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(-1)


def test_a_live_os_lock_refuses_a_second_writer_even_with_break_lock(tmp_path, children):
    holder = hold_os_lock(tmp_path, children, {"pid": 4242, "host": socket.gethostname(), "command": "merge"})
    for break_lock in (False, True):
        with pytest.raises(ConfigError) as info:
            OutputLock(tmp_path, break_lock=break_lock).acquire()
        assert "another lesionaug merge (pid 4242) is writing to this folder (found by the OS file lock)" in \
            info.value.message
        assert "--break-lock cannot clear" in info.value.fix
    kill_unreaped(holder)  # the kernel dropped its lock at death; nobody reaped it
    lock = OutputLock(tmp_path).acquire()
    assert lock.check == lock_module.OS_CHECK and lock.took_over["pid"] == 4242
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_without_os_locks_the_pid_check_finds_the_writer_and_says_how_to_clear_it(tmp_path, children, no_os_locks):
    live = sleeper()
    children.append(live)
    write_record(tmp_path, live.pid)
    with pytest.raises(ConfigError) as info:
        OutputLock(tmp_path).acquire()
    assert f"(pid {live.pid}) is writing to this folder (found by the pid check" in info.value.message
    assert "--break-lock" in info.value.fix
    broken = OutputLock(tmp_path, break_lock=True).acquire()  # e.g. the pid was reused by another program
    assert broken.check == lock_module.PID_CHECK and broken.took_over["pid"] == live.pid
    broken.release()
    kill_unreaped(live)
    write_record(tmp_path, live.pid)
    taken = OutputLock(tmp_path).acquire()  # a zombie is no writer
    assert taken.took_over["pid"] == live.pid
    taken.release()


@pytest.mark.parametrize("os_locks", [True, False])
def test_a_lock_from_another_host_is_cleared_only_with_break_lock(tmp_path, monkeypatch, os_locks):
    if not os_locks:
        monkeypatch.setattr(lock_module, "_os_lock", lambda fd: "unsupported")
    write_record(tmp_path, 99, host="gpu-node-7")
    with pytest.raises(ConfigError) as info:
        OutputLock(tmp_path).acquire()
    assert "(pid 99 on gpu-node-7) locked this folder (found by the lock file's host" in info.value.message
    assert "--break-lock" in info.value.fix
    assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == "gpu-node-7"  # left as it was
    lock = OutputLock(tmp_path, break_lock=True).acquire()
    assert lock.took_over["host"] == "gpu-node-7"
    lock.release()


def test_the_lock_is_never_written_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    folder = tmp_path / "out"
    folder.mkdir()
    os.symlink(victim, folder / LOCK_NAME)
    with pytest.raises(ConfigError, match="cannot open the lock file"):
        OutputLock(folder).acquire()
    assert victim.read_text() == "keep"


def test_a_lock_file_unlinked_by_a_finishing_writer_is_not_taken(tmp_path, monkeypatch):
    # The writer before us unlinked its lock file after we opened it: our flock on that orphaned
    # inode proves nothing, so the lock is taken again on the file now at the path.
    path = tmp_path / LOCK_NAME
    path.write_text("{}")
    orphan = os.open(path, os.O_RDWR)
    path.unlink()
    real_open = OutputLock._open
    opened = []

    def open_orphan_first(self):
        opened.append(1)
        return orphan if len(opened) == 1 else real_open(self)

    monkeypatch.setattr(OutputLock, "_open", open_orphan_first)
    lock = OutputLock(tmp_path).acquire()
    assert len(opened) == 2
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
