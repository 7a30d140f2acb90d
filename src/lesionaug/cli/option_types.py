"""Value types every command shares: sizes (``N`` or ``WxH``) and fixed sets of values (choices).

One size spelling everywhere: ``--size`` (and ``--seg-size`` for a segmenter's input) take ``N``
or ``WxH``. Where only squares make sense (a training side, a segmenter input, example data) a
``WxH`` with ``W != H`` is refused. A choice is a ``Literal``, so ``--help`` lists the values and
shell completion offers them; matching ignores case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import typer

_SIZE = re.compile(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?")
SIZE_METAVAR = "N|WxH"


def _size_pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    match = _SIZE.fullmatch(str(value))
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a size: use N (square) or WxH, e.g. 512 or 640x480")
    w = int(match.group(1))
    h = int(match.group(2)) if match.group(2) else w
    return w, h  # the range each command accepts is checked by its own config


def size_text(value: Any) -> str:
    """``--size`` where any shape is allowed: ``512`` or ``640x480`` (the text, checked)."""
    w, h = _size_pair(value)
    return str(w) if w == h else f"{w}x{h}"


def square_side(value: Any) -> int:
    """``--size`` where only squares make sense: ``512`` or ``512x512`` -> 512."""
    w, h = _size_pair(value)
    if w != h:
        raise typer.BadParameter(f"{value!r}: this size is square; use N or NxN")
    return w


def choice(values: Iterable[str]) -> Any:
    """A ``Literal`` of the values: Typer turns it into a choice that help and completion list."""
    return Literal[tuple(values)]  # type: ignore[valid-type]


__all__ = ["SIZE_METAVAR", "choice", "size_text", "square_side"]
