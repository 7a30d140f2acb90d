"""Will the run fit? What it writes, checked against free disk space, and what it keeps in memory,
checked against available memory, both from the counts alone before any job is planned.

The estimates are deliberately generous (bytes per pixel above what these encoders usually reach,
every file rounded up to a filesystem block, manifest records above their measured size): refusing
a run that would have fit wastes a minute, while running out of space or memory after an hour of
generation wastes the hour. Memory grows with the pairs a run writes: their manifest records are
kept for the finish (label rows and the manifest in job order, measured at 3.5 KiB each); the plan
itself is lazy and costs nothing per job.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lesionaug.errors import ConfigError

BLOCK = 4096
MARGIN_BYTES = 32 << 20
MARGIN_FRACTION = 0.10
# Upper-end bytes per pixel of each encoding, measured on generated dermoscopy-like images.
IMAGE_BYTES_PER_PIXEL = {"png": 2.2, "jpg": 0.7, "bmp": 3.0}
MASK_BYTES_PER_PIXEL = {"png": 0.06, "bmp": 1.0}
MANIFEST_LINE_BYTES = 1024
RUN_BYTES_PER_PAIR = 8 << 10  # a pair's manifest record in memory (3.5 KiB measured), its line and label row
PREVIEW_BYTES_PER_JOB = 3 << 10  # a dry run's job as a dict (0.9 KiB measured) and as JSON (0.35 KiB)
MEMORY_MARGIN_BYTES = 512 << 20  # the interpreter, numpy, the dataset index and the shape model


def _blocks(n: float) -> int:
    return int(-(-int(n) // BLOCK) * BLOCK)


@dataclass(frozen=True)
class SpaceEstimate:
    pairs: int  # bytes for the synthetic pairs still to write
    originals: int  # bytes for originals that must be copied (hard links cost nothing)
    labels: int
    total: int

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "originals": self.originals, "labels": self.labels, "total": self.total}


def estimate_output_bytes(
    n_pairs: int, size: tuple[int, int], image_format: str, mask_format: str,
    originals_to_copy: int = 0, label_bytes: int = 0,
) -> SpaceEstimate:
    w, h = size
    pixels = w * h
    image = _blocks(pixels * IMAGE_BYTES_PER_PIXEL[image_format] + 1024)
    mask = _blocks(pixels * MASK_BYTES_PER_PIXEL[mask_format] + 1100)
    pairs = n_pairs * (image + mask + MANIFEST_LINE_BYTES)
    labels = _blocks(label_bytes + n_pairs * 200)
    total = int((pairs + originals_to_copy + labels) * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    return SpaceEstimate(pairs, originals_to_copy, labels, total)


def existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def can_hard_link(src_root: Path, out: Path) -> bool:
    """Hard links need the same filesystem; the writer falls back to copying otherwise."""
    try:
        return os.stat(src_root).st_dev == os.stat(existing_ancestor(out)).st_dev
    except OSError:
        return False


def check_free_space(out: Path, estimate: SpaceEstimate) -> int:
    """Raise ConfigError when the filesystem holding ``out`` lacks room; returns the free bytes."""
    where = existing_ancestor(out)
    free = shutil.disk_usage(where).free
    if free < estimate.total:
        raise ConfigError(
            f"not enough free disk space: the output needs about {_mib(estimate.total)} "
            f"(pairs {_mib(estimate.pairs)}, copied originals {_mib(estimate.originals)}), "
            f"{_mib(free)} free",
            path=where,
            fix="free some space, choose another --out, lower --n, or use --synthetic-only",
        )
    return free


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def available_memory() -> int | None:
    """Bytes this process can still use: MemAvailable, capped by a cgroup v2 limit; None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(available, 0)


def check_memory(n_items: int, bytes_per_item: int, what: str, fix: str) -> None:
    """Raise ConfigError when ``n_items`` records of ``bytes_per_item`` would not fit in available memory.

    ``what`` names the items for the message: "pairs written by one run", "jobs listed by a dry run".
    """
    needed = n_items * bytes_per_item + MEMORY_MARGIN_BYTES
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"not enough memory: {n_items:,} {what} keep about {_mib(needed)} in memory, {_mib(available)} available",
            fix=fix,
        )
