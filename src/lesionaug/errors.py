"""The one exception tree of lesionaug; every class carries its exit code.

The CLI maps these to exit codes and one-line messages in one place (``cli/_app.py``).
Core modules raise them with the file that is wrong and the fix, never a bare message.

Which class, by one rule: a value that is wrong whatever the files hold (``--n 0``, ``--steps 0``,
``--size 7``, an unknown scheduler, two options that contradict each other) is a ``UsageError``
(exit 2); a file or folder that cannot be used, or a value that does not fit one (a resolution the
engine cannot make, a diagnosis the training split lacks), is a ``ConfigError`` or ``DatasetError``
(exit 3), and so is an OS error on a file (``ResourceError``: read-only, full, no permission, name
too long). Error lines stay short: ``one_line`` shortens long quoted values and paths in the middle.
"""

from __future__ import annotations

import errno
import functools
import os
import re
from pathlib import Path

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_BACKEND = 4
EXIT_PARTIAL = 5
EXIT_INTERRUPTED = 130

MAX_ERROR_LINE = 300  # characters of one printed error line: two terminal lines
MAX_QUOTED = 80  # a quoted value or unbroken run (a path) longer than this is shortened in the middle
MAX_PATH = 120  # the path an error names, in its line
# What a line quotes is shortened step by step until the line fits: (path, quoted value) lengths.
_QUOTE_STEPS = ((MAX_PATH, MAX_QUOTED), (60, 40), (40, 24))
MAX_FIELD = 8192  # each field of an error in a JSON envelope
ELLIPSIS = "..."

# OS errors that say a file or folder cannot be used (not a bug): exit 3 with the path and the cause.
RESOURCE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EFBIG", "ENAMETOOLONG", "ENOTDIR", "EISDIR",
                 "ELOOP", "EMLINK", "ENOENT", "EEXIST", "ENOTEMPTY", "EXDEV", "EIO", "EMFILE", "ENFILE", "EBUSY",
                 "ETXTBSY", "ESTALE")
    if hasattr(errno, name)
)
_RESOURCE_FIXES = {
    "EROFS": "the filesystem is read-only: choose an output folder on a writable one",
    "EACCES": "check the permissions of the file and its folders, or choose another output folder",
    "EPERM": "check the permissions of the file and its folders, or choose another output folder",
    "ENOSPC": "free disk space (or choose an output folder on another disk), then rerun",
    "EDQUOT": "free space within your disk quota (or choose another output folder), then rerun",
    "EFBIG": "the file is larger than this filesystem allows: choose an output folder on another disk",
    "ENAMETOOLONG": "use a shorter path: at most 255 bytes per file or folder name, 4096 in all",
    "EMFILE": "raise the open-file limit (ulimit -n) or lower --workers",
    "ENFILE": "the system has too many open files: retry when fewer programs run",
}


def shorten(text: str, limit: int) -> str:
    """``text`` itself when it fits in ``limit`` characters, else its start and end around ``...``."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(ELLIPSIS), 2)
    head = (keep + 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (keep - head):]


@functools.lru_cache(maxsize=8)
def _quoted(limit: int) -> re.Pattern:
    """A quoted value ('...' or "...", escapes allowed) or a run of more than ``limit`` non-spaces."""
    return re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S{%d,}""" % (limit + 1))


def shorten_quoted(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` with each quoted value and each unbroken run (a path, a long word) longer than
    ``limit`` shortened in the middle, its quotes kept: a 50 MB value quoted in a message becomes
    its first and last few dozen characters."""
    if len(text) <= limit:
        return text
    text = shorten(text, MAX_FIELD)  # the scan below stays cheap however long the text

    def cut(match: re.Match) -> str:
        part = match.group(0)
        if len(part) <= limit:
            return part
        if part[0] in "'\"" and part[-1] == part[0] and len(part) > 1:
            return part[0] + shorten(part[1:-1], limit - 2) + part[0]
        return shorten(part, limit)

    return _quoted(limit).sub(cut, text)


def os_error_in(exc: BaseException) -> OSError | None:
    """The OS error behind ``exc`` (itself, or what it was raised from) when it says a file or folder
    cannot be used (``RESOURCE_ERRNOS``); None for anything else, which is a bug to report."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in RESOURCE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


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

    # The fix is printed whole even when long (Interrupted's is the command line that resumes the run).
    verbatim_fix = False

    def one_line(self, limit: int = MAX_ERROR_LINE) -> str:
        """Path, message and fix in one line of about ``limit`` characters at most.

        What the line quotes (the path, quoted values, paths and other unbroken runs in the text)
        is shortened in the middle, more at each step, until the line fits; the words of the message
        are kept. Only a line still over twice ``limit`` (a library's long message quoted without
        quotes) has its message cut. The fix of an ``Interrupted`` (the command that resumes) is whole.
        """
        lines = [self._line(path_chars, quoted) for path_chars, quoted in _QUOTE_STEPS]
        line = next((candidate for candidate in lines if len(candidate) <= limit), lines[0])
        if len(line) <= 2 * limit or self.verbatim_fix:
            return line
        return shorten(self._line(*_QUOTE_STEPS[0], message_chars=limit), 2 * limit)

    def _line(self, path_chars: int, quoted: int, message_chars: int | None = None) -> str:
        message = shorten_quoted(self.message.replace("\n", " "), quoted)
        if message_chars is not None:
            message = shorten(message, message_chars)
        path = shorten(self.path.replace("\n", " "), path_chars) if self.path else None
        line = f"{path}: {message}" if path else message
        if self.fix:
            fix = self.fix.replace("\n", " ")
            line = f"{line} -- {fix if self.verbatim_fix else shorten_quoted(fix, quoted)}"
        return line

    def as_dict(self) -> dict:
        """The error for a JSON envelope: every field whole unless absurdly long (``MAX_FIELD``)."""
        return {
            "code": self.code,
            "message": shorten(self.message, MAX_FIELD),
            "path": shorten(self.path, MAX_FIELD) if self.path else self.path,
            "fix": shorten(self.fix, MAX_FIELD) if self.fix else self.fix,
        }


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
    verbatim_fix = True  # the command line that resumes the run, to copy whole


class ResourceError(LesionaugError):
    """The operating system refused a file or folder: read-only, full, no permission, name too long."""

    exit_code = EXIT_BAD_INPUT
    code = "resource"

    @classmethod
    def from_os_error(cls, exc: OSError) -> ResourceError:
        """The OS error as one line: the path it names, the cause in words and its errno name."""
        name = errno.errorcode.get(exc.errno or 0, "")
        cause = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
        path = exc.filename if exc.filename is not None else None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        message = f"{cause} ({name})" if name else cause
        if exc.filename2 is not None:
            message += f" (with {os.fsdecode(exc.filename2) if isinstance(exc.filename2, bytes) else exc.filename2})"
        fix = _RESOURCE_FIXES.get(name, "check that the path exists and that you can write to it")
        return cls(message, path=path, fix=fix)
