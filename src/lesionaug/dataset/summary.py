"""What ``lesionaug info`` reports about a dataset: counts, label distributions, sizes, problems.

Sizes are upright: files whose EXIF orientation tag was applied are listed in ``exif_oriented``.

``inspect_dataset`` indexes the folder, then reads every usable mask once to find the pixel-level
problems plain indexing does not look for (empty masks, masks that are not binary), and returns the
JSON-ready summary. ``strict`` turns any problem into a ``DatasetError``; damaged files always are.

Real samples and the synthetic pairs ``augment`` added are counted apart: ``labels`` describes the
real ones (with the fraction of them that has each field), ``synthetic_labels`` the synthetic ones.
``diagnosis_warning`` says when most real training images have no diagnosis, so their prompts would
not name one, and how to join a label table.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lesionaug.dataset.files import mask_pixel_problem
from lesionaug.dataset.index import DatasetIndex, Problem, load_dataset, problems_error
from lesionaug.dataset.layouts.records import SPLITS, Sample
from lesionaug.errors import DatasetError
from lesionaug.progress import SILENT, Reporter

NO_LABEL = "(none)"
LABEL_FIELDS = ("diagnosis", "attributes", "site", "age", "sex")
DIAGNOSIS_WARN_BELOW = 0.5  # warn when fewer than half the real training images have a diagnosis


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


def label_distributions(samples: Sequence[Sample]) -> dict:
    """Counts of each diagnosis, attribute, site and sex; age range and mean; the labelled fraction per field."""
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
        "fraction": label_fractions(samples),
        "diagnosis": dict(diagnosis.most_common()),
        "attributes": dict(attributes.most_common()),
        "site": dict(site.most_common()),
        "sex": dict(sex.most_common()),
        "age": age,
    }


def label_fractions(samples: Sequence[Sample]) -> dict[str, float | None]:
    """The fraction of ``samples`` that has each label field (None when there are no samples)."""
    if not samples:
        return dict.fromkeys(LABEL_FIELDS)
    has = {
        "diagnosis": lambda lab: lab.diagnosis is not None,
        "attributes": lambda lab: bool(lab.attributes),
        "site": lambda lab: lab.site is not None,
        "age": lambda lab: lab.age is not None,
        "sex": lambda lab: lab.sex is not None,
    }
    return {name: round(sum(1 for s in samples if test(s.labels)) / len(samples), 4) for name, test in has.items()}


def diagnosis_warning(index: DatasetIndex) -> str | None:
    """A warning when most real training images have no diagnosis (their prompts would name none)."""
    train = [s for s in index.usable("train") if not s.synthetic]
    if not train:
        return None
    with_dx = sum(1 for s in train if s.labels.diagnosis)
    if with_dx >= DIAGNOSIS_WARN_BELOW * len(train):
        return None
    return (
        f"only {with_dx} of {len(train)} real training images have a diagnosis, so the prompts of the others "
        "would name none; join a label table by image id with --labels FILE (an ISIC Archive metadata export, "
        "the ISIC 2019 ground truth, the ISIC 2017 Part 3 table or the HAM10000 metadata; docs/label-tables.md)"
    )


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
    warning = diagnosis_warning(index)
    return {
        "layout": index.layout,
        "root": str(index.root),
        "n_samples": len(index.samples),
        "n_real": len(index.real),
        "n_synthetic": len(index.synthetic),
        "splits": {
            "source": index.split_source,
            "counts": index.split_counts(),
            "usable": {split: sum(1 for s in usable if s.split == split and s.id not in bad_ids) for split in SPLITS},
        },
        "labels": label_distributions(index.real),
        "synthetic_labels": label_distributions(index.synthetic) if index.synthetic else None,
        "label_tables": list(index.label_tables),
        "image_sizes": image_size_summary(index),
        "fingerprint": index.fingerprint,
        "exif_oriented": [{"path": path, "orientation": tag} for path, tag in index.exif_oriented],
        "problems": [p.as_dict() for p in inspection.problems],
        "warnings": [warning] if warning else [],
    }


def inspect_dataset(
    path: str | Path,
    masks: str | Path | None = None,
    split_seed: int = 0,
    strict: bool = False,
    reporter: Reporter = SILENT,
    labels: Sequence[str | Path] = (),
) -> dict:
    """Index a dataset, check its masks' pixels, and summarise it; raises DatasetError on bad input."""
    index = load_dataset(path, masks=masks, split_seed=split_seed, labels=labels, reporter=reporter)
    inspection = Inspection(index, tuple(check_mask_pixels(index, reporter)))
    data = summary(inspection)
    error = problems_error(index.root, inspection.problems, strict)
    if error is not None:
        error.data = data  # the envelope carries the full summary, every problem included
        raise error
    return data
