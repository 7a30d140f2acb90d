"""The one exception tree of lesionaug; every class carries its exit code.

The CLI maps these to exit codes and one-line messages in one place (``cli/_app.py``).
Core modules raise them with the file that is wrong and the fix, never a bare message.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_BACKEND = 4
EXIT_PARTIAL = 5
EXIT_INTERRUPTED = 130


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for
    one-line errors that quote a library's own words."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LesionaugError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code = EXIT_UNEXPECTED
    code = "error"

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.fix = fix

    def one_line(self) -> str:
        parts = [f"{self.path}: {self.message}" if self.path else self.message]
        if self.fix:
            parts.append(self.fix)
        return " -- ".join(parts).replace("\n", " ")

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "path": self.path, "fix": self.fix}


class UsageError(LesionaugError):
    """Options that contradict each other or are malformed."""

    exit_code = EXIT_USAGE
    code = "usage"


class DatasetError(LesionaugError):
    """The dataset folder is missing, unreadable, or not a layout lesionaug knows."""

    exit_code = EXIT_BAD_INPUT
    code = "bad_dataset"


class ConfigError(LesionaugError):
    """A configuration value, config file or output folder that cannot be used."""

    exit_code = EXIT_BAD_INPUT
    code = "bad_config"


class BackendError(LesionaugError):
    """An execution provider, device or library is not available."""

    exit_code = EXIT_BACKEND
    code = "backend_unavailable"


class ModelError(LesionaugError):
    """A model or engine folder is missing, incomplete, or fails verification."""

    exit_code = EXIT_BACKEND
    code = "model_unavailable"


class PartialFailure(LesionaugError):
    """Some items failed; what succeeded is written and recorded."""

    exit_code = EXIT_PARTIAL
    code = "partial"

    def __init__(self, message: str, *, data: dict | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.data = data or {}


class VerificationFailed(LesionaugError):
    """An output folder differs from its manifest: files missing, changed or extra (listed in ``data``)."""

    exit_code = EXIT_BAD_INPUT
    code = "verify_failed"

    def __init__(self, message: str, *, data: dict | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.data = data or {}


class Interrupted(LesionaugError):
    """The run was interrupted (SIGINT); what finished is kept."""

    exit_code = EXIT_INTERRUPTED
    code = "interrupted"
