"""``augment --min-fidelity F``: each generated pair is checked by a segmenter trained on the real
training pairs; a pair whose Dice against its own mask is below F is generated again, with a noise
seed of its own for each attempt, up to ``--max-attempts``, then dropped or kept (``--on-reject``).

Attempt 1 uses the plan's noise seed (the pair as an unfiltered run makes it); attempt a >= 2 uses
``seeds.derive_attempt_seed(seed, k, a)``. Retries are generated and every image is scored one at a
time, so what pair k becomes depends on (seed, k) alone, never on which other pairs of its batch were
retried. A kept pair is the best attempt (the first, among equals); the manifest records its
``fidelity``, ``attempt`` and ``attempt_noise_seed``.

The segmenter lives in ``evaluate/`` (a later step), so the run is handed a scorer: ``PairScorer``,
a function of (image, mask) -> Dice that ``evaluate.pair_fidelity`` builds and caches beside the model.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from lesionaug.errors import ConfigError, UsageError
from lesionaug.output.pair_writer import PairRecord
from lesionaug.seeds import derive_attempt_seed

ON_REJECT = ("drop", "keep")

PairScorer = Callable[[np.ndarray, np.ndarray], float]  # (generated image, its mask) -> Dice
# (the real training samples the plan was fitted on, the model or engine folder) -> a scorer
ScorerFactory = Callable[[list, object], PairScorer]
# (jobs, their masks, noise seeds) -> images at the pairs' size
GenerateImages = Callable[[list, list, list], Sequence[np.ndarray]]


@dataclass(frozen=True)
class FidelityFilter:
    """The ``--min-fidelity``, ``--max-attempts`` and ``--on-reject`` of one run; validated here."""

    min_fidelity: float
    max_attempts: int = 3
    on_reject: str = "drop"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_fidelity <= 1.0:
            raise ConfigError(f"--min-fidelity is a Dice between 0 and 1, got {self.min_fidelity}",
                              fix="use e.g. --min-fidelity 0.7")
        if not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 100:
            raise ConfigError(f"--max-attempts must be 1..100, got {self.max_attempts}", fix="use --max-attempts 3")
        if self.on_reject not in ON_REJECT:
            raise UsageError(f"unknown --on-reject {self.on_reject!r}", fix=f"use --on-reject {' or '.join(ON_REJECT)}")

    def to_dict(self) -> dict:
        return asdict(self)


def fidelity_filter_from_options(
    min_fidelity: float | None, max_attempts: int | None, on_reject: str | None
) -> FidelityFilter | None:
    """The filter the options ask for; ``--max-attempts``/``--on-reject`` alone are a usage error."""
    if min_fidelity is None:
        if max_attempts is not None or on_reject is not None:
            raise UsageError("--max-attempts and --on-reject tune --min-fidelity", fix="add --min-fidelity F, e.g. 0.7")
        return None
    return FidelityFilter(min_fidelity, 3 if max_attempts is None else max_attempts, on_reject or "drop")


def attempt_noise_seed(master_seed: int, record: PairRecord, attempt: int) -> int:
    """Attempt 1: the plan's noise seed; attempt a >= 2: a seed derived from (seed, k, a)."""
    return record.noise_seed if attempt == 1 else derive_attempt_seed(master_seed, record.index, attempt)


@dataclass(frozen=True)
class CheckedImage:
    """What the loop writes for one job: the kept image (None: dropped) and the record it goes with."""

    image: np.ndarray | None
    record: PairRecord


@dataclass
class FilterTally:
    """What the filter did over a run (shared by every worker)."""

    settings: FidelityFilter
    attempts: Counter = field(default_factory=Counter)  # attempt kept -> pairs
    dropped: list[int] = field(default_factory=list)
    kept_below: list[int] = field(default_factory=list)  # kept although below the threshold
    fidelities: list[float] = field(default_factory=list)  # of the pairs kept
    first: list[float] = field(default_factory=list)  # every pair's first attempt: the unfiltered run's pairs
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, index: int, attempt: int, fidelity: float, written: bool, first: float) -> None:
        with self.lock:
            self.first.append(first)
            if not written:
                self.dropped.append(index)
                return
            self.attempts[attempt] += 1
            self.fidelities.append(fidelity)
            if fidelity < self.settings.min_fidelity:
                self.kept_below.append(index)

    def to_dict(self) -> dict:
        values = np.asarray(self.fidelities, dtype=np.float64)
        return {
            **self.settings.to_dict(),
            "n_checked": len(self.fidelities) + len(self.dropped),
            "n_first_attempt": self.attempts.get(1, 0),
            "kept_by_attempt": {str(k): v for k, v in sorted(self.attempts.items())},
            "n_dropped": len(self.dropped),
            "dropped_indices": sorted(self.dropped),
            "n_kept_below": len(self.kept_below),
            "fidelity_mean": float(values.mean()) if values.size else None,
            **first_attempt_summary(self.first),
        }


REPORTED_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def first_attempt_summary(first: Sequence[float]) -> dict:
    """How the first attempts (the pairs a run without the filter writes) score: their mean, and
    how many fall below each of a row of thresholds, so one run tells what any threshold would reject."""
    values = np.asarray(first, dtype=np.float64)
    return {
        "first_attempt_fidelity_mean": float(values.mean()) if values.size else None,
        "first_attempt_below": {f"{t:.1f}": int((values < t).sum()) for t in REPORTED_THRESHOLDS},
    }


def check_pair(
    record: PairRecord, mask: np.ndarray, first: np.ndarray, generate_images: GenerateImages, score: PairScorer,
    settings: FidelityFilter, master_seed: int, job,
) -> tuple[CheckedImage, int, float, float]:
    """Score pair k's first image, retry below the threshold; (what to write, the kept attempt, its
    Dice, the first attempt's Dice)."""
    best_image, best_attempt, best_score = first, 1, float(score(first, mask))
    first_score = best_score
    attempt = 1
    while best_score < settings.min_fidelity and attempt < settings.max_attempts:
        attempt += 1
        seed = attempt_noise_seed(master_seed, record, attempt)
        (image,) = generate_images([job], [mask], [seed])
        value = float(score(np.asarray(image), mask))
        if value > best_score:
            best_image, best_attempt, best_score = np.asarray(image), attempt, value
    chosen = replace(record, fidelity=best_score, attempt=best_attempt,
                     attempt_noise_seed=attempt_noise_seed(master_seed, record, best_attempt))
    rejected = best_score < settings.min_fidelity and settings.on_reject == "drop"
    return CheckedImage(None if rejected else best_image, chosen), best_attempt, best_score, first_score


def filtered_generator(
    generate_images: GenerateImages, score: PairScorer, settings: FidelityFilter, master_seed: int,
    done: set[int], tally: FilterTally,
) -> Callable[[list, list], list]:
    """The loop's batch generator with the filter in it: the batch at the plan's seeds, then each
    job not yet written checked (and retried) one by one."""

    def generate_batch(batch: list, masks: list) -> list:
        images = generate_images(batch, masks, [job.record.noise_seed for job in batch])
        out: list = []
        for job, image, mask in zip(batch, images, masks):
            if job.index in done:  # a resumed batch's finished pair: the loop skips it
                out.append(image)
                continue
            checked, attempt, value, first = check_pair(job.record, mask, np.asarray(image), generate_images, score,
                                                        settings, master_seed, job)
            tally.add(job.index, attempt, value, checked.image is not None, first)
            out.append(checked)
        return out

    return generate_batch
