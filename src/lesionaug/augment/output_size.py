"""The size of the new pairs: the dataset's own, unless ``--size`` says otherwise.

Without ``--size`` a synthetic pair gets the most common size of the dataset's real images (ties: the
larger area, then the wider), so a folder of 1024 px images gains 1024 px pairs whatever resolution
the generator runs at. When the generator's resolution is below that, its images are upscaled to
the pair's size, and the run says so in one line (``resolution_note``) and records it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from lesionaug.augment.options import AugmentOptions
from lesionaug.dataset.index import DatasetIndex
from lesionaug.errors import DatasetError

MAX_SIDE = 8192  # PlanConfig's largest side


def most_common_image_size(index: DatasetIndex) -> tuple[int, int]:
    """(width, height) shared by the most real images of the dataset (header sizes, EXIF-upright)."""
    counts = Counter(s.size for s in index.samples if not s.synthetic and s.size and s.size != (0, 0))
    if not counts:
        raise DatasetError("no image of the dataset has a readable size", path=index.root,
                           fix="pass --size, e.g. --size 512")
    (w, h), _ = max(counts.items(), key=lambda item: (item[1], item[0][0] * item[0][1], item[0]))
    scale = min(1.0, MAX_SIDE / max(w, h))  # beyond the plan's limit: the same shape, smaller
    return max(8, int(w * scale)), max(8, int(h * scale))


def with_dataset_size(options: AugmentOptions, index: DatasetIndex) -> AugmentOptions:
    """``options`` with the pairs' size settled: the given ``--size``, else the dataset's most common size."""
    if not options.size_from_dataset:
        return options
    plan = dataclasses.replace(options.plan, size=most_common_image_size(index))
    return dataclasses.replace(options, plan=plan)  # the same size again if called twice


def resolution_note(generation_size: tuple[int, int], output_size: tuple[int, int]) -> str | None:
    """One line when the generator works below the pairs' size (its images are upscaled), else None."""
    (gw, gh), (w, h) = generation_size, output_size
    if gw >= w and gh >= h:
        return None
    return (f"the generator makes {gw}x{gh} images and the pairs are {w}x{h}: each image is upscaled "
            f"(pass --size {gw}x{gh} for pairs at the generator's resolution, or use a model trained at {max(w, h)} px)")
