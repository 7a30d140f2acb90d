"""Which real training pairs a run may use: one deterministic subset of the training split.

    subset = RealSubset(count=16, seed=0)                 # or RealSubset(fraction=0.22, seed=0)
    chosen = choose_real_subset(index.usable("train"), subset)

``train`` and ``augment`` (the generator, its masks and labels) and ``evaluate`` (the segmenters)
all call ``choose_real_subset`` with the same options, so a low-data comparison gives the generator
exactly the real pairs the real-only baseline gets, and no hidden ones.

The choice ranks each sample by a hash of (seed, id) and keeps the first k, returned in the split's
own order. It depends on the ids alone: not on the order files are listed in, and adding a sample
to the split moves at most one sample out of the subset. k is ``count``, or ``ceil(fraction * n)``
and at least 1; the seed is the split seed (``--split-seed``), so one option names the real data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lesionaug.errors import DatasetError, UsageError


@dataclass(frozen=True)
class RealSubset:
    """``--real-fraction F`` or ``--real-count N`` (not both) under the split seed."""

    fraction: float | None = None
    count: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fraction is not None and self.count is not None:
            raise UsageError(
                "--real-fraction and --real-count both choose the real training pairs",
                fix="pass one of them",
            )
        if self.fraction is None and self.count is None:
            raise UsageError("a real subset needs --real-fraction or --real-count", fix="pass one of them")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise UsageError(f"--real-fraction must be in (0, 1], got {self.fraction}", fix="e.g. --real-fraction 0.22")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise UsageError(f"--real-count must be a positive whole number, got {self.count}", fix="e.g. --real-count 16")

    def size(self, n: int) -> int:
        """How many of ``n`` training pairs the subset keeps."""
        if self.count is not None:
            return self.count
        return max(1, math.ceil(self.fraction * n)) if n else 0

    def option(self) -> str:
        """The command-line option that asks for this subset, e.g. ``--real-count 16``."""
        return f"--real-count {self.count}" if self.count is not None else f"--real-fraction {self.fraction:g}"

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "count": self.count, "seed": self.seed}


def real_subset_from_options(fraction: float | None, count: int | None, seed: int) -> RealSubset | None:
    """The subset the options ask for; None (the whole training split) when neither is given."""
    if fraction is None and count is None:
        return None
    return RealSubset(fraction=fraction, count=count, seed=seed)


def subset_rank(sample_id: str, seed: int) -> bytes:
    """A sample's place in the seeded order the subset is taken from (smaller comes first)."""
    return hashlib.blake2b(f"real-subset:{seed}:{sample_id}".encode(), digest_size=16).digest()


def choose_real_subset(samples: Sequence[Any], subset: RealSubset | None, *, root: Any = None) -> list[Any]:
    """The samples (anything with an ``id``) the subset keeps, in their original order.

    None keeps them all. Asking for more pairs than the split holds is a ``DatasetError``.
    """
    samples = list(samples)
    if subset is None:
        return samples
    keep = subset.size(len(samples))
    if keep > len(samples):
        raise DatasetError(
            f"{subset.option()} asks for {keep} real training pairs but the training split has {len(samples)}",
            path=root,
            fix=f"pass --real-count {len(samples)} or fewer, or a --real-fraction",
        )
    ranked = sorted(range(len(samples)), key=lambda i: (subset_rank(str(samples[i].id), subset.seed), i))
    chosen = set(ranked[:keep])
    return [s for i, s in enumerate(samples) if i in chosen]


__all__ = ["RealSubset", "choose_real_subset", "real_subset_from_options", "subset_rank"]
