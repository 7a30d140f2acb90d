"""The hot loop of ``augment``: masks for the next batch, images for this one, files written behind.

Three things overlap: a thread samples the masks of batch b+1 while the engine generates batch b,
and the writer pool encodes and writes batch b-1. Batches are cut at fixed positions of the job
list (jobs [b*B, (b+1)*B)), and a resumed run regenerates a partly written batch whole and writes
only its missing pairs, so every pair is generated in the same batch as in an uninterrupted run:
a resumed output is byte-identical even on an engine whose numerics depend on the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from lesionaug.augment.stop import StopRequest
from lesionaug.output.pair_writer import PairRecord, PairWriter


@dataclass(frozen=True)
class LoopJob:
    """One job as the loop sees it: its manifest record and what its mask is drawn from."""

    record: PairRecord
    diagnosis: str | None

    @property
    def index(self) -> int:
        return self.record.index


@dataclass
class LoopStats:
    batches: int = 0
    generated: int = 0  # images produced by the engine (including regenerated finished ones)
    submitted: int = 0  # pairs handed to the writer
    skipped_existing: int = 0
    stopped_early: bool = False
    seconds: dict = field(default_factory=lambda: {"masks_wait": 0.0, "generate": 0.0, "submit_wait": 0.0})


def fixed_batches(jobs: Sequence[LoopJob], batch_size: int) -> list[list[LoopJob]]:
    """Jobs cut into batches at fixed positions, whatever has been written already."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    return [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]


def run_generation(
    jobs: Sequence[LoopJob],
    done: set[int],
    batch_size: int,
    sample_masks: Callable[[list[LoopJob]], list[np.ndarray]],
    generate: Callable[[list[LoopJob], list[np.ndarray]], np.ndarray],
    writer: PairWriter,
    stop: StopRequest | None = None,
) -> LoopStats:
    """Generate and hand to ``writer`` every job not in ``done``; stops between batches on request."""
    stats = LoopStats()
    batches = fixed_batches(jobs, batch_size)
    todo = [b for b in batches if any(j.index not in done for j in b)]
    stats.skipped_existing = sum(1 for j in jobs if j.index in done)
    if not todo:
        return stats
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lesionaug-masks") as mask_pool:
        pending = mask_pool.submit(sample_masks, todo[0])
        for b, batch in enumerate(todo):
            t0 = time.perf_counter()
            masks = pending.result()
            t1 = time.perf_counter()
            if b + 1 < len(todo):
                pending = mask_pool.submit(sample_masks, todo[b + 1])
            images = generate(batch, masks)
            t2 = time.perf_counter()
            if len(images) != len(batch):
                raise RuntimeError(f"the engine returned {len(images)} images for a batch of {len(batch)}")
            written_now = 0
            for job, image, mask in zip(batch, images, masks):
                if job.index in done:
                    continue
                writer.submit(job.record, np.asarray(image), mask)
                written_now += 1
            t3 = time.perf_counter()
            stats.batches += 1
            stats.generated += len(batch)
            stats.submitted += written_now
            stats.seconds["masks_wait"] += t1 - t0
            stats.seconds["generate"] += t2 - t1
            stats.seconds["submit_wait"] += t3 - t2
            if stop is not None and stop.requested and b + 1 < len(todo):
                stats.stopped_early = True
                pending.cancel()
                break
    return stats
