"""Several generation workers in one run: one engine per GPU, interleaved batches, one output folder.

``--gpus 0,1,2,3`` loads the engine once per GPU (in parallel: a TensorRT build takes minutes) and
runs the generation loop once per GPU, in threads of this process (ONNX Runtime releases the GIL
while a graph runs). Worker w takes the w-th, (w+W)-th, ... of the batches still to do; the batches
are the fixed cuts of ``loop.fixed_batches``, so each pair is generated in the same batch as with one
worker, and with the same provider the output is byte-identical. All workers hand their pairs to
one writer, which appends to one manifest, so an interrupted run resumes with any number of GPUs.
A failed worker stops the others between batches; its error is the run's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from lesionaug.augment.loop import LoopJob, LoopStats, run_generation
from lesionaug.engine import Engine
from lesionaug.engine.gan_runtime import GanEngine, load_generator_engine
from lesionaug.engine.session import default_threads


class SharedStop:
    """The user's stop request, or a failed worker: either stops every worker between batches."""

    def __init__(self, user=None) -> None:
        self.user = user
        self.failed = threading.Event()

    @property
    def requested(self) -> bool:
        return self.failed.is_set() or bool(self.user is not None and self.user.requested)


def load_engines(engine_dir, provider: str, devices: Sequence[int], **load_options) -> list[Engine | GanEngine]:
    """One engine per device; on the CPU provider the cores are shared out.

    The first loads alone, so TensorRT builds each engine once (minutes) and writes its cache; the
    others then load in parallel from that cache (seconds) instead of racing to write the same files.
    """
    threads = max(1, default_threads() // len(devices)) if provider == "cpu" and len(devices) > 1 else None

    def load(device: int) -> Engine | GanEngine:
        return load_generator_engine(engine_dir, provider, device=device, threads=threads, **load_options)

    first = load(devices[0])
    if len(devices) == 1:
        return [first]
    with ThreadPoolExecutor(len(devices) - 1, thread_name_prefix="lesionaug-load") as pool:
        return [first, *pool.map(load, devices[1:])]


def merge_stats(parts: Sequence[LoopStats]) -> LoopStats:
    total = LoopStats()
    for part in parts:
        total.batches += part.batches
        total.generated += part.generated
        total.submitted += part.submitted
        total.stopped_early = total.stopped_early or part.stopped_early
        for key, value in part.seconds.items():
            total.seconds[key] = max(total.seconds.get(key, 0.0), value)  # workers run side by side
    total.skipped_existing = parts[0].skipped_existing if parts else 0
    return total


def run_workers(jobs: Sequence[LoopJob], done: set[int], batch_size: int, sample_masks: Callable,
                generators: Sequence[Callable], writer, stop=None) -> tuple[LoopStats, list[LoopStats]]:
    """``run_generation`` once per generator (one per engine), over interleaved batches: (total, each)."""
    if len(generators) == 1:
        stats = run_generation(jobs, done, batch_size, sample_masks, generators[0], writer, stop)
        return stats, [stats]
    shared = SharedStop(stop)
    results: list[LoopStats | None] = [None] * len(generators)
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            results[w] = run_generation(jobs, done, batch_size, sample_masks, generators[w], writer, shared,
                                        worker=(w, len(generators)))
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread once every worker stopped
            errors.append(exc)
            shared.failed.set()

    threads = [threading.Thread(target=work, args=(w,), name=f"lesionaug-worker-{w}") for w in range(len(generators))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    each = [r for r in results if r is not None]
    return merge_stats(each), each
