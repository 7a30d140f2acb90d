"""Progress reporting without a UI dependency.

Core modules take a ``Reporter`` and call ``reporter.task(...)``; the CLI passes one that draws
Rich progress bars on stderr when it is a terminal and writes ``PlainTask`` lines when it is not
(batch logs), tests and library users get the silent default.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol


class Task(Protocol):
    def advance(self, n: int = 1, **fields: Any) -> None: ...

    def update(self, **fields: Any) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]: ...

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...


class _SilentTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


class _SilentContext(AbstractContextManager):
    def __enter__(self) -> _SilentTask:
        return _SilentTask()

    def __exit__(self, *exc: object) -> None:
        return None


class SilentReporter:
    """Reports nothing: the default for library calls and tests."""

    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Task]:
        return _SilentContext()

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


SILENT = SilentReporter()


# ------------------------------------------------------------------------------------------------
# Plain lines for batch logs: where stderr is not a terminal (SLURM, CI), or into --log-file.

PROGRESS_INTERVAL_ENV = "LESIONAUG_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


def progress_interval() -> float:
    """Seconds between plain progress lines: ``LESIONAUG_PROGRESS_INTERVAL``, else 30."""
    try:
        value = float(os.environ.get(PROGRESS_INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


def format_duration(seconds: float) -> str:
    """'0.4s', '45s', '12m05s', '3h02m'."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class PlainTask:
    """One task's progress as plain lines, at most one per ``interval`` seconds, and one when it ends.

    A line reads ``stage 2: ControlNet  300/5000 (6%)  1.52 it/s  eta 51m33s  loss 0.0412``: the
    step, the total, the rate since the first step (so a resumed run's skipped steps do not count),
    the time left at that rate, then the fields the task reports (loss where there is one). A task
    shorter than ``interval`` writes only its closing line.
    """

    def __init__(
        self,
        description: str,
        total: int | None,
        write: Callable[[str], None],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.description = description
        self.total = total
        self.write = write
        self.interval = interval
        self.clock = clock
        self.done = 0
        self.fields: dict[str, Any] = {}
        self.started = self.last_line = clock()
        self.anchor: tuple[float, int] | None = None  # (time, done) at the first advance

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update(fields)
        if self.anchor is None:
            self.anchor = (self.clock(), self.done)
        self._maybe_write()

    def update(self, **fields: Any) -> None:
        total = fields.pop("total", None)
        if total is not None:
            self.total = total
        self.fields.update(fields)
        self._maybe_write()

    def _maybe_write(self) -> None:
        now = self.clock()
        if now - self.last_line >= self.interval:
            self.last_line = now
            self.write(self.line(now))

    def rate(self, now: float) -> float | None:
        if self.anchor is None or now <= self.anchor[0] or self.done <= self.anchor[1]:
            return None
        return (self.done - self.anchor[1]) / (now - self.anchor[0])

    def line(self, now: float) -> str:
        parts = [f"{self.description}:"]
        if self.total:
            parts.append(f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)")
        elif self.done:
            parts.append(str(self.done))
        rate = self.rate(now)
        if rate is not None:
            parts.append(f"{rate:.3g} it/s")
            if self.total and self.done < self.total:
                parts.append(f"eta {format_duration((self.total - self.done) / rate)}")
        parts.append(f"elapsed {format_duration(now - self.started)}")
        parts += [f"{k} {_value(v)}" for k, v in self.fields.items()]
        return "  ".join(parts)

    def close(self) -> None:
        now = self.clock()
        self.write(self.line(now) + ("  done" if not self.total or self.done >= self.total else "  stopped"))
