"""errors.py: one-line messages that stay short, and OS errors on files as exit-3 resource errors."""

from __future__ import annotations

import errno

import pytest

from lesionaug.errors import (
    EXIT_BAD_INPUT,
    MAX_ERROR_LINE,
    MAX_FIELD,
    ConfigError,
    Interrupted,
    ResourceError,
    UsageError,
    os_error_in,
    shorten,
    shorten_quoted,
)


def test_shorten_keeps_both_ends_around_an_ellipsis():
    assert shorten("abcdef", 6) == "abcdef"
    # 10 characters into 7: 4 kept, 2 from the start and 2 from the end around "...".
    assert shorten("0123456789", 7) == "01...89"
    assert len(shorten("x" * 10_000, 300)) == 300


def test_shorten_quoted_cuts_long_quoted_values_and_runs_and_keeps_the_rest():
    text = f"prompt {'a' * 200!r} is malformed near \"{'b' * 100}\" in /{'c/' * 100}x.png; it's short"
    short = shorten_quoted(text, 40)
    # A quoted value keeps its quotes and 38 characters: 18 + "..." + 17. The unbroken run
    # "/c/.../x.png;" (207 characters) becomes 40: its first 19 and last 18 around "...".
    assert short == (
        f"prompt '{'a' * 18}...{'a' * 17}' is malformed near \"{'b' * 18}...{'b' * 17}\" in "
        f"/c/c/c/c/c/c/c/c/c/...c/c/c/c/c/c/x.png; it's short"
    )
    assert shorten_quoted("unknown scheduler 'foo'", 40) == "unknown scheduler 'foo'"  # short: unchanged


def test_one_line_stays_within_two_terminal_lines_whatever_it_quotes():
    error = UsageError(f"--prefix {'x' * 50_000!r} is not a safe file-name prefix", fix="use letters")
    line = error.one_line()
    assert len(line) <= MAX_ERROR_LINE
    assert line.startswith("--prefix 'xxx") and line.endswith("' is not a safe file-name prefix -- use letters")
    deep = "/data/" + "d/" * 2000 + "image.png"
    error = ConfigError("cannot read\n" + deep * 3, path=deep, fix="check " + deep)
    line = error.one_line(200)
    assert len(line) <= 200 and line.startswith("/data/d/d/") and line.endswith("image.png") and "\n" not in line
    # The JSON envelope keeps every field whole up to MAX_FIELD characters.
    assert error.as_dict()["path"] == deep and error.as_dict()["fix"] == "check " + deep
    assert len(error.as_dict()["message"]) == MAX_FIELD < len(error.message)


def test_the_command_that_resumes_an_interrupted_run_is_printed_whole():
    command = "lesionaug augment ./isic --n 5000 --out " + "o/" * 200
    line = Interrupted("interrupted after 3 of 10 pairs", path="/out", fix=f"resume with: {command}").one_line()
    assert line.endswith(command)


@pytest.mark.parametrize(
    "code, cause, fix",
    [
        (errno.EROFS, "Read-only file system (EROFS)", "read-only"),
        (errno.EACCES, "Permission denied (EACCES)", "permissions"),
        (errno.ENOSPC, "No space left on device (ENOSPC)", "free disk space"),
        (errno.ENAMETOOLONG, "File name too long (ENAMETOOLONG)", "255 bytes"),
    ],
)
def test_an_os_error_becomes_an_exit_3_line_with_the_path_and_the_cause(code, cause, fix):
    raised = OSError(code, cause.split(" (")[0], "/out/images/SYN_0000001.jpg")
    error = ResourceError.from_os_error(raised)
    assert error.exit_code == EXIT_BAD_INPUT and error.code == "resource"
    assert error.path == "/out/images/SYN_0000001.jpg" and error.message == cause and fix in error.fix


def test_the_os_error_is_found_behind_what_was_raised_from_it():
    refused = OSError(errno.EROFS, "Read-only file system", "/out/x.png")
    try:
        try:
            raise refused
        except OSError as exc:
            raise RuntimeError("writing failed") from exc
    except RuntimeError as wrapped:
        assert os_error_in(wrapped) is refused
    assert os_error_in(OSError(errno.EBADF, "Bad file descriptor")) is None  # a bug, not a file problem
    assert os_error_in(ValueError("x")) is None
