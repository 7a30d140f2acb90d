"""``lesionaug demo-data``: the example cases written in one layout, atomically.

    write_demo_dataset("example", n=120, layout="isic2018", size=128, seed=0, style="light")

``style`` picks the look (``styles.py``: ``light``, or ``deep`` for darker skin, side light and other
artefacts); the marker file records it beside the layout, size and seed.

The folder appears whole or not at all (written beside it, then renamed); a folder that holds
earlier demo data is replaced, any other non-empty folder is refused.

``archive_metadata`` also writes ``isic_archive_metadata.csv`` at the top: an ISIC Archive metadata
export for the images (to join with ``--labels``); on by default for ``isic2018``, whose Task 1
images no file of the layout labels, as in the real release.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from lesionaug.atomic_files import replace_folder
from lesionaug.demo.cases import DEMO_LAYOUTS, draw_cases
from lesionaug.demo.layouts import ARCHIVE_METADATA, TASK3_FIRST_ID, WRITERS, write_archive_metadata
from lesionaug.demo.styles import DEFAULT_STYLE, DEMO_STYLES
from lesionaug.errors import ConfigError, UsageError
from lesionaug.formats import DEMO_MARKER


# First image id of the layouts whose images have ISIC ids (an archive export can label them).
ARCHIVE_ID_START = {"isic2018": 0, "isic2017": 0, "ham10000": TASK3_FIRST_ID}


def _is_earlier_demo(folder: Path) -> bool:
    try:
        return json.loads((folder / DEMO_MARKER).read_text()).get("tool") == "lesionaug demo-data"
    except (OSError, ValueError, AttributeError):
        return False


def check_demo_target(out: Path) -> None:
    """Refuse a file, or a non-empty folder that is not earlier demo output."""
    if out.exists() and not out.is_dir():
        raise ConfigError("output path is a file", path=out, fix="choose a folder name for the demo data")
    if out.is_dir() and any(out.iterdir()) and not _is_earlier_demo(out):
        raise ConfigError(
            "output folder is not empty and is not earlier demo data",
            path=out,
            fix="choose a new folder, or empty this one",
        )


def check_demo_options(
    out: str | Path,
    n: int,
    layout: str,
    size: int,
    archive_metadata: bool | None = None,
    style: str = DEFAULT_STYLE,
) -> Path:
    """Validate the demo options and the target folder; the absolute target path."""
    if layout not in DEMO_LAYOUTS:
        raise UsageError(f"unknown demo layout {layout!r}", fix=f"use one of {', '.join(DEMO_LAYOUTS)}")
    if style not in DEMO_STYLES:
        raise UsageError(f"unknown demo style {style!r}", fix=f"use one of {', '.join(DEMO_STYLES)}")
    if archive_metadata and layout not in ARCHIVE_ID_START:
        raise UsageError(
            f"--archive-metadata needs images with ISIC ids; the {layout} layout has none",
            fix=f"use it with --layout {' or '.join(ARCHIVE_ID_START)}",
        )
    if n < 1 or not 32 <= size <= 2048:
        raise UsageError(f"need n >= 1 and 32 <= size <= 2048 (got n={n}, size={size})", fix="change --n or --size")
    out = Path(out).expanduser().absolute()
    check_demo_target(out)
    return out


def write_demo_dataset(
    out: str | Path,
    n: int = 40,
    layout: str = "isic2018",
    size: int = 128,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
    archive_metadata: bool | None = None,
    style: str = DEFAULT_STYLE,
) -> Path:
    """Write ``n`` example pairs in ``layout`` to ``out`` (atomically) and return its absolute path."""
    out = check_demo_options(out, n, layout, size, archive_metadata, style)
    if archive_metadata is None:
        archive_metadata = layout == "isic2018"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        cases = draw_cases(n, layout, seed)
        WRITERS[layout](tmp, cases, size, seed, progress or (lambda: None), style)
        if archive_metadata:
            write_archive_metadata(tmp / ARCHIVE_METADATA, cases, ARCHIVE_ID_START[layout])
        marker = {"tool": "lesionaug demo-data", "layout": layout, "n": n, "size": size, "seed": seed, "style": style}
        (tmp / DEMO_MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n")
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
