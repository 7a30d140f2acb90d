"""Which samples of a folder go into a datalist: the options, and the training, validation and test lists.

Training is the real training split (all of it, or the same ``--real-fraction`` subset ``lesionaug
evaluate`` trains on with the same ``--seed``) followed by the first ``--synthetic`` synthetic
pairs in job order (a larger count is a superset of a smaller one, as in ``evaluate``).
Validation and test are the real validation and test splits: nothing synthetic is ever in them.
Only usable samples go in (an image with a mask and no problem; ``lesionaug info`` lists the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lesionaug.dataset.index import DatasetIndex, Sample
from lesionaug.dataset.subsets import RealSubset, choose_real_subset
from lesionaug.errors import ConfigError, UsageError
from lesionaug.formats import DATALIST_FORMATS


@dataclass(frozen=True)
class DatalistOptions:
    """What ``lesionaug datalist`` was asked to write; validated on construction."""

    folder: Path
    format: str
    out: Path | None = None  # default: <folder>-<format> beside the folder
    synthetic: int | None = None  # the first N synthetic pairs in job order; None: all of them
    real_fraction: float = 1.0
    seed: int = 0
    labels: tuple[Path, ...] = ()
    masks: Path | None = None
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.format not in DATALIST_FORMATS:
            raise UsageError(f"unknown datalist format {self.format!r}", fix=f"use --format {'|'.join(DATALIST_FORMATS)}")
        if self.synthetic is not None and self.synthetic < 0:
            raise UsageError(f"--synthetic must be 0 or more, got {self.synthetic}", fix="e.g. --synthetic 1000")
        if not 0 < self.real_fraction <= 1:
            raise UsageError(f"--real-fraction must be in (0, 1], got {self.real_fraction}", fix="e.g. --real-fraction 0.25")
        folder, target = Path(self.folder).resolve(), self.target().resolve()
        if target == folder or target.is_relative_to(folder):
            raise ConfigError(
                "the datalist folder is inside the dataset folder", path=self.target(), fix="pass an --out beside it"
            )
        if folder.is_relative_to(target):
            raise ConfigError("the datalist folder holds the dataset folder", path=self.target(), fix="pass a new --out")

    def target(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        folder = Path(self.folder)
        return folder.with_name(f"{folder.resolve().name}-{self.format}")

    def to_dict(self) -> dict:
        return {
            "folder": str(self.folder),
            "format": self.format,
            "out": str(self.target()),
            "synthetic": self.synthetic,
            "real_fraction": self.real_fraction,
            "seed": self.seed,
            "labels": [str(p) for p in self.labels],
            "masks": str(self.masks) if self.masks else None,
            "split_seed": self.split_seed,
        }


@dataclass(frozen=True)
class Selection:
    """The samples of each list, and what was left out of training."""

    real_train: tuple[Sample, ...]
    synthetic: tuple[Sample, ...]
    validation: tuple[Sample, ...]
    test: tuple[Sample, ...]
    n_real_available: int
    n_synthetic_available: int

    @property
    def training(self) -> tuple[Sample, ...]:
        return self.real_train + self.synthetic

    def counts(self) -> dict:
        return {
            "training": len(self.training),
            "real_training": len(self.real_train),
            "synthetic": len(self.synthetic),
            "validation": len(self.validation),
            "test": len(self.test),
            "real_training_available": self.n_real_available,
            "synthetic_available": self.n_synthetic_available,
        }


def select_samples(index: DatasetIndex, options: DatalistOptions) -> Selection:
    """The training, validation and test lists of ``options`` from an indexed folder."""
    usable = {s.id for s in index.usable()}
    real_train = [s for s in index.usable("train") if not s.synthetic]
    if not real_train and not index.synthetic:
        raise ConfigError(
            "the folder has no usable training pairs",
            path=index.root,
            fix="check the masks and splits (lesionaug info FOLDER lists the problems)",
        )
    synthetic = [s for s in index.synthetic if s.id in usable]
    count = len(synthetic) if options.synthetic is None else min(options.synthetic, len(synthetic))
    subset = None if options.real_fraction >= 1 else RealSubset(fraction=options.real_fraction, seed=options.split_seed)
    return Selection(
        # The real subset exactly as `evaluate --real-fraction` draws it (dataset/subsets.py, split seed).
        real_train=tuple(choose_real_subset(real_train, subset, root=index.root)),
        synthetic=tuple(synthetic[:count]),
        validation=tuple(s for s in index.usable("val") if not s.synthetic),
        test=tuple(s for s in index.usable("test") if not s.synthetic),
        n_real_available=len(real_train),
        n_synthetic_available=len(synthetic),
    )
