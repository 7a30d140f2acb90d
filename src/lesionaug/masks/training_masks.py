"""A dataset's masks for the shape model: the training split to fit on, held-out masks to judge by.

Masks are decoded one at a time and shrunk for fitting at once, so a split of full-resolution
ISIC masks never sits in memory whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from lesionaug.dataset.index import DatasetIndex, Sample, read_mask
from lesionaug.errors import DatasetError
from lesionaug.masks.features import ANALYSIS_SIDE
from lesionaug.masks.geometry import fit_within, resize_mask
from lesionaug.masks.shape_model import ShapeModel, ShapeModelConfig, fit_shape_model
from lesionaug.progress import SILENT, Reporter

HOLD_OUT_FRACTION = 0.2


def mask_fitting_samples(index: DatasetIndex) -> list[Sample]:
    """The usable training samples; a one-line error when there are none."""
    train = index.usable("train")
    if not train:
        raise DatasetError(
            f"the training split has no usable image/mask pairs (splits: {index.split_counts()})",
            path=index.root,
            fix="run `lesionaug info` on the dataset to see what is missing (masks? pass --masks DIR)",
        )
    return train


def fit_and_held_out(index: DatasetIndex, seed: int = 0) -> tuple[list[Sample], list[Sample], str]:
    """Samples to fit on, real masks to compare against, and where the latter come from.

    Held-out masks are the validation and test splits; a dataset with only a training split holds
    out a seeded ``HOLD_OUT_FRACTION`` of it instead (by a hash of seed and id, so it is stable).
    """
    train = mask_fitting_samples(index)
    held = index.usable("val") + index.usable("test")
    if held:
        return train, held, "val+test"
    keep, out = [], []
    for s in train:
        digest = hashlib.blake2b(f"{seed}:{s.id}".encode(), digest_size=8).digest()
        (out if int.from_bytes(digest, "big") / 2**64 < HOLD_OUT_FRACTION else keep).append(s)
    if len(keep) < 2 or not out:
        raise DatasetError(
            f"too few samples ({len(train)}) to hold some out for the realism report",
            path=index.root,
            fix="add validation or test masks, or more training masks",
        )
    return keep, out, f"{HOLD_OUT_FRACTION:.0%} of train"


def iter_masks(samples: Sequence[Sample], max_side: int | None = None, task=None) -> Iterator[np.ndarray]:
    """Decode each sample's mask (shrunk so its longer side is at most ``max_side``)."""
    for s in samples:
        mask = read_mask(s.mask)
        if max_side is not None:
            mask = resize_mask(mask, fit_within((mask.shape[1], mask.shape[0]), max_side))
        if task is not None:
            task.advance()
        yield mask


def fit_dataset_shape_model(
    index: DatasetIndex,
    samples: Sequence[Sample],
    *,
    config: ShapeModelConfig | None = None,
    reporter: Reporter = SILENT,
) -> ShapeModel:
    """Fit the shape model on ``samples`` (normally the training split), one model per diagnosis."""
    config = config or ShapeModelConfig()
    fingerprint = index.subset_fingerprint(samples)
    with reporter.task("fitting shape model", total=len(samples)) as task:
        model = fit_shape_model(
            iter_masks(samples, config.fit_max_side, task),
            [s.labels.diagnosis for s in samples],
            config=config,
            fingerprint=fingerprint,
        )
    if model.skipped:
        reporter.warn(f"{model.skipped} training mask(s) had no lesion and were left out of the shape model")
    return model


def held_out_masks(samples: Sequence[Sample], reporter: Reporter = SILENT) -> list[np.ndarray]:
    """Held-out masks at the resolution the shape features are measured at."""
    with reporter.task("reading held-out masks", total=len(samples)) as task:
        return list(iter_masks(samples, ANALYSIS_SIDE, task))
