"""Will the output fit? An estimate of what a run writes, checked against free space before it starts.

The estimate is deliberately generous (bytes per pixel above what these encoders usually reach,
every file rounded up to a filesystem block): refusing a run that would have fit wastes a
minute, while running out of space after an hour of generation wastes the hour.
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
