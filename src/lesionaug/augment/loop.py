"""The hot loop of ``augment``: masks for the next batch, images for this one, files written behind.

Three things overlap: a thread samples the masks of batch b+1 while the engine generates batch b,
and the writer pool encodes and writes batch b-1. Batches are cut at fixed positions of the job
list (jobs [b*B, (b+1)*B)), and a resumed run regenerates a partly written batch whole and writes
only its missing pairs, so every pair is generated in the same batch as in an uninterrupted run:
a resumed output is byte-identical even on an engine whose numerics depend on the batch.
"""

from __future__ import annotations

import time
from itertools import islice
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from lesionaug.augment.fidelity_filter import CheckedImage
from lesionaug.augment.stop import StopRequest
from lesionaug.output.pair_writer import PairRecord, PairWriter
from lesionaug.plan.jobs import Job


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
    dropped: int = 0  # rejected by --min-fidelity with --on-reject drop
    stopped_early: bool = False
    seconds: dict = field(default_factory=lambda: {"masks_wait": 0.0, "generate": 0.0, "submit_wait": 0.0})


def fixed_batches(jobs: Sequence[LoopJob], batch_size: int) -> Iterator[list[LoopJob]]:
    """Jobs cut into batches at fixed positions, whatever has been written already (made one at a time)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    for i in range(0, len(jobs), batch_size):
        yield list(jobs[i : i + batch_size])


def _batches_to_do(
    jobs: Sequence[LoopJob], done: set[int], batch_size: int, stats: LoopStats
) -> Iterator[list[LoopJob]]:
    """The batches with at least one job not in ``done``; counts the finished jobs passed on the way."""
    for batch in fixed_batches(jobs, batch_size):
        finished = sum(1 for j in batch if j.index in done)
        stats.skipped_existing += finished
        if finished < len(batch):
            yield batch


def run_generation(
    jobs: Sequence[LoopJob],
    done: set[int],
    batch_size: int,
    sample_masks: Callable[[list[LoopJob]], list[np.ndarray]],
    generate: Callable[[list[LoopJob], list[np.ndarray]], np.ndarray],
    writer: PairWriter,
    stop: StopRequest | None = None,
    worker: tuple[int, int] = (0, 1),
) -> LoopStats:
    """Generate and hand to ``writer`` every job not in ``done``; stops between batches on request.

    ``jobs`` may be lazy (``loop_jobs`` of a plan): batches are made as the loop reaches them, so
    memory does not grow with the number of jobs. ``worker`` (w, W): only every W-th batch still to
    do, from the w-th, so W workers share a run; the batches themselves are the same fixed cuts, so
    each pair is generated as by one worker.
    """
    stats = LoopStats()
    todo = islice(_batches_to_do(jobs, done, batch_size, stats), worker[0], None, worker[1])
    batch = next(todo, None)
    if batch is None:
        return stats
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lesionaug-masks") as mask_pool:
        pending = mask_pool.submit(sample_masks, batch)
        while batch is not None:
            t0 = time.perf_counter()
            masks = pending.result()
            t1 = time.perf_counter()
            following = next(todo, None)
            if following is not None:
                pending = mask_pool.submit(sample_masks, following)
            images = generate(batch, masks)
            t2 = time.perf_counter()
            if len(images) != len(batch):
                raise RuntimeError(f"the engine returned {len(images)} images for a batch of {len(batch)}")
            written_now = 0
            for job, image, mask in zip(batch, images, masks):
                if job.index in done:
                    continue
                record = job.record
                if isinstance(image, CheckedImage):  # --min-fidelity: the kept attempt, or None if dropped
                    record, image = image.record, image.image
                    if image is None:
                        stats.dropped += 1
                        continue
                writer.submit(record, np.asarray(image), mask)
                written_now += 1
            t3 = time.perf_counter()
            stats.batches += 1
            stats.generated += len(batch)
            stats.submitted += written_now
            stats.seconds["masks_wait"] += t1 - t0
            stats.seconds["generate"] += t2 - t1
            stats.seconds["submit_wait"] += t3 - t2
            if stop is not None and stop.requested and following is not None:
                stats.stopped_early = True
                pending.cancel()
                break
            batch = following
    return stats


class LoopJobs(Sequence[LoopJob]):
    """A plan's jobs as the loop sees them, each converted when asked for (the plan may be lazy)."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [loop_job(job) for job in self.jobs[position]]
        return loop_job(self.jobs[position])


def loop_job(job: Job) -> LoopJob:
    record = PairRecord(job.id, job.index, job.prompt, job.labels.to_dict(), job.mask_seed, job.mask_source,
                        job.noise_seed)
    return LoopJob(record, job.diagnosis)
