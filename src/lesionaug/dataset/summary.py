"""What ``lesionaug info`` reports about a dataset: counts, label distributions, sizes, problems.

``inspect_dataset`` indexes the folder, then reads every usable mask once to find the pixel-level
problems plain indexing does not look for (empty masks, masks that are not binary), and returns the
JSON-ready summary. ``strict`` turns any problem into a ``DatasetError``; damaged files always are.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lesionaug.dataset.files import mask_pixel_problem
from lesionaug.dataset.index import DatasetIndex, Problem, load_dataset, problems_error
from lesionaug.dataset.layouts.records import SPLITS
from lesionaug.errors import DatasetError
from lesionaug.progress import SILENT, Reporter

NO_LABEL = "(none)"


@dataclass(frozen=True)
class Inspection:
    index: DatasetIndex
    pixel_problems: tuple[Problem, ...]

    @property
    def problems(self) -> list[Problem]:
        return list(self.index.problems) + list(self.pixel_problems)


def check_mask_pixels(index: DatasetIndex, reporter: Reporter = SILENT) -> list[Problem]:
    """Empty and non-binary masks among the usable samples (reads every mask once)."""
    found: list[Problem] = []
    usable = index.usable()
    with reporter.task("checking masks", total=len(usable)) as task:
        for sample in usable:
            try:
                problem = mask_pixel_problem(sample.mask)
            except DatasetError as exc:
                found.append(Problem("corrupt", str(sample.mask), exc.message, sample_id=sample.id))
            else:
                if problem:
                    found.append(Problem(problem[0], str(sample.mask), problem[1], sample_id=sample.id))
            task.advance()
    return found


def label_distributions(index: DatasetIndex) -> dict:
    """Counts of each diagnosis, attribute, site and sex; age range and mean."""
    samples = index.samples
    diagnosis = Counter(s.labels.diagnosis or NO_LABEL for s in samples)
    attributes = Counter(a for s in samples for a in s.labels.attributes)
    site = Counter(s.labels.site or NO_LABEL for s in samples)
    sex = Counter(s.labels.sex or NO_LABEL for s in samples)
    ages = [s.labels.age for s in samples if s.labels.age is not None]
    age = {"n": len(ages)}
    if ages:
        age.update(min=min(ages), max=max(ages), mean=round(statistics.fmean(ages), 1))
    return {
        "labelled": sum(1 for s in samples if not s.labels.is_empty),
        "diagnosis": dict(diagnosis.most_common()),
        "attributes": dict(attributes.most_common()),
        "site": dict(site.most_common()),
        "sex": dict(sex.most_common()),
        "age": age,
    }


def image_size_summary(index: DatasetIndex) -> dict:
    """Distinct header sizes, their extremes by area, median width and height, and the commonest ones."""
    sizes = [s.size for s in index.samples if s.size != (0, 0)]
    if not sizes:
        return {"n_distinct": 0, "min": None, "max": None, "median": None, "most_common": []}
    counts = Counter(sizes)
    by_area = sorted(counts, key=lambda wh: (wh[0] * wh[1], wh))
    return {
        "n_distinct": len(counts),
        "min": list(by_area[0]),
        "max": list(by_area[-1]),
        "median": [int(statistics.median(w for w, _ in sizes)), int(statistics.median(h for _, h in sizes))],
        "most_common": [[w, h, n] for (w, h), n in counts.most_common(5)],
    }


def summary(inspection: Inspection) -> dict:
    """The ``info`` data: exactly the keys the JSON envelope promises."""
    index = inspection.index
    usable = index.usable()
    bad_ids = {p.sample_id for p in inspection.pixel_problems}
    return {
        "layout": index.layout,
        "root": str(index.root),
        "n_samples": len(index.samples),
        "splits": {
            "source": index.split_source,
            "counts": index.split_counts(),
            "usable": {split: sum(1 for s in usable if s.split == split and s.id not in bad_ids) for split in SPLITS},
        },
        "labels": label_distributions(index),
        "image_sizes": image_size_summary(index),
        "fingerprint": index.fingerprint,
        "problems": [p.as_dict() for p in inspection.problems],
    }


def inspect_dataset(
    path: str | Path,
    masks: str | Path | None = None,
    split_seed: int = 0,
    strict: bool = False,
    reporter: Reporter = SILENT,
) -> dict:
    """Index a dataset, check its masks' pixels, and summarise it; raises DatasetError on bad input."""
    index = load_dataset(path, masks=masks, split_seed=split_seed, reporter=reporter)
    inspection = Inspection(index, tuple(check_mask_pixels(index, reporter)))
    data = summary(inspection)
    error = problems_error(index.root, inspection.problems, strict)
    if error is not None:
        error.data = data  # the envelope carries the full summary, every problem included
        raise error
    return data
