"""Which mask a job gets: from the fitted shape model, a jittered real mask, or either (``mixed``).

    mask = sample_mask(model, mask_seed(seed, k), diagnosis="mel", size=(512, 512), source="mixed")

The choice for ``mixed`` is drawn from the mask's own seed, so job k's mask depends only on (seed, k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lesionaug.errors import UsageError
from lesionaug.masks.jitter import sample_real_mask
from lesionaug.masks.shape_model import ShapeModel, sample_model_mask
from lesionaug.seeds import MASK_STREAM, derive_seed

MASK_SOURCES = ("model", "real", "mixed")


def check_mask_source(source: str) -> str:
    if source not in MASK_SOURCES:
        raise UsageError(f"unknown mask source {source!r}", fix=f"use one of {', '.join(MASK_SOURCES)}")
    return source


def choose_source(mask_source: str, seed: int) -> str:
    """Resolve ``mixed`` to ``model`` or ``real`` for one mask seed (half and half)."""
    check_mask_source(mask_source)
    if mask_source != "mixed":
        return mask_source
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return "real" if rng.random() < 0.5 else "model"


def sample_mask(
    model: ShapeModel,
    seed: int,
    diagnosis: str | None = None,
    size: tuple[int, int] = (512, 512),
    source: str = "model",
) -> np.ndarray:
    """One new lesion mask (bool, shape (h, w)) from its own seed; same seed, same mask."""
    source = choose_source(source, seed)
    if source == "real":
        return sample_real_mask(model, seed, diagnosis, size)
    return sample_model_mask(model.group_for(diagnosis), model.config, seed, size)


def sample_masks(
    model: ShapeModel,
    seeds: Sequence[int],
    diagnoses: Sequence[str | None] | None = None,
    size: tuple[int, int] = (512, 512),
    source: str = "model",
) -> list[np.ndarray]:
    diagnoses = diagnoses if diagnoses is not None else [None] * len(seeds)
    return [sample_mask(model, s, d, size, source) for s, d in zip(seeds, diagnoses)]


def mask_seed(master_seed: int, index: int) -> int:
    """The seed of mask ``index`` under ``master_seed`` (the same as plan job ``index``'s)."""
    return derive_seed(master_seed, index, MASK_STREAM)
