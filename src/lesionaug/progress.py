"""Progress reporting without a UI dependency.

Core modules take a ``Reporter`` and call ``reporter.task(...)``; the CLI passes one that draws
Rich progress bars on stderr, tests and library users get the silent default.
"""

from __future__ import annotations

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
