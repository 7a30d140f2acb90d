"""Several generation workers (``--gpus``) in one run: the same bytes as one worker, resumable.

On this machine the workers are CPU engines (``--provider auto`` resolves to the CPU here), one per
listed device, each running the generation loop over interleaved batches: the code path of one
worker per GPU. Both sides run single-threaded sessions (LESIONAUG_THREADS=1), so the only
difference between them is how the batches are shared out.
"""

from __future__ import annotations

import json

import pytest
from augment_runs import augment, output_digest, trained_run

from lesionaug.augment.generation_options import GenerationOptions, parse_gpus
from lesionaug.augment.loop import LoopJob, run_generation
from lesionaug.augment.workers import run_workers
from lesionaug.errors import BackendError, UsageError
from lesionaug.formats import RUN_NAME
from lesionaug.output.pair_writer import PairRecord


def test_gpus_parse_lists_and_all():
    assert parse_gpus("0,1, 3") == (0, 1, 3)
    assert parse_gpus("all", count_gpus=lambda: 4) == (0, 1, 2, 3)
    with pytest.raises(BackendError, match="found no NVIDIA GPU"):
        parse_gpus("all", count_gpus=lambda: 0)
    with pytest.raises(UsageError, match="malformed --gpus"):
        parse_gpus("0-3")


def test_gpus_and_device_are_checked_in_the_options():
    assert GenerationOptions(gpus=(2, 3)).worker_devices == (2, 3)
    assert GenerationOptions(device=1).worker_devices == (1,)
    with pytest.raises(UsageError, match="each GPU once"):
        GenerationOptions(gpus=(0, 0))
    with pytest.raises(UsageError, match="both choose the GPUs"):
        GenerationOptions(gpus=(0, 1), device=1)


class _Writer:
    def __init__(self):
        self.written = []

    def submit(self, record, image, mask):
        self.written.append(record.index)


def _jobs(n: int) -> list[LoopJob]:
    return [LoopJob(PairRecord(f"SYN_{k}", k, "p", {}, k, "model", k), None) for k in range(n)]


def test_workers_take_interleaved_fixed_batches():
    """Batches of 2 over 9 jobs (5 batches, the first done): worker 0 gets batches 1 and 3, worker 1
    batches 2 and 4 (the 2nd and 4th of those left), each generated whole, as one worker cuts them."""
    seen: dict[int, list[list[int]]] = {0: [], 1: []}

    def generator(w):
        def generate(batch, masks):
            seen[w].append([j.index for j in batch])
            return [0] * len(batch)

        return generate

    writer = _Writer()
    total, each = run_workers(_jobs(9), {0, 1}, 2, lambda b: [0] * len(b), [generator(0), generator(1)], writer)
    assert seen == {0: [[2, 3], [6, 7]], 1: [[4, 5], [8]]}
    assert sorted(writer.written) == list(range(2, 9))
    assert (total.batches, [e.batches for e in each], total.skipped_existing) == (4, [2, 2], 2)


def test_a_failed_worker_stops_the_others_and_its_error_is_raised():
    def failing(batch, masks):
        raise RuntimeError("CUDA out of memory")

    calls = []

    def slow(batch, masks):
        calls.append(batch[0].index)
        return [0] * len(batch)

    with pytest.raises(RuntimeError, match="out of memory"):
        run_workers(_jobs(40), set(), 2, lambda b: [0] * len(b), [failing, slow], _Writer())
    assert len(calls) < 10  # worker 1 stopped between batches instead of doing its 10


def test_one_worker_is_the_plain_loop():
    a, b = _Writer(), _Writer()
    run_generation(_jobs(5), set(), 2, lambda b: [0] * len(b), lambda batch, m: [0] * len(batch), a)
    run_workers(_jobs(5), set(), 2, lambda b: [0] * len(b), [lambda batch, m: [0] * len(batch)], b)
    assert a.written == b.written == list(range(5))


@pytest.mark.slow
def test_two_workers_write_the_bytes_of_one_and_resume_with_another_count(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONAUG_THREADS", "1")
    run = trained_run()
    args = ("--n", "7", "--batch-size", "2")
    one = augment(run.dataset, tmp_path / "one", *args)
    two = augment(run.dataset, tmp_path / "two", *args, "--gpus", "0,1")
    assert one.exit_code == 0 and two.exit_code == 0, two.stderr
    assert output_digest(tmp_path / "two") == output_digest(tmp_path / "one")
    record = json.loads((tmp_path / "two" / RUN_NAME).read_text())
    assert [w["device"] for w in record["workers"]] == [0, 1]
    assert [w["batches"] for w in record["workers"]] == [2, 2]  # batches 0, 2 and 1, 3 of 4
    assert len(record["engines"]) == 2 and record["engines"][0]["provider"] == "cpu"
    # A one-worker output of 4 pairs, grown to 7 by two workers (--force keeps the pairs both plans
    # share): the 4 are kept, 3 generated.
    grown = tmp_path / "grown"
    assert augment(run.dataset, grown, "--n", "4", "--batch-size", "2").exit_code == 0
    resumed = augment(run.dataset, grown, *args, "--gpus", "0,1", "--force")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.envelope["data"]["n_skipped_existing"] == 4 and resumed.envelope["data"]["n_generated"] == 3
    assert output_digest(grown) == output_digest(tmp_path / "one")


def test_gpus_with_the_cpu_provider_is_refused_in_one_line(tmp_path):
    from augment_runs import invoke

    result = invoke("augment", tmp_path, "--n", "2", "--size", "64", "--provider", "cpu", "--gpus", "0,1", "--json")
    assert result.exit_code == 2
    assert "--gpus runs one worker per GPU" in result.envelope["errors"][0]["message"]


def test_the_first_engine_loads_alone_then_the_rest_together(monkeypatch):
    """TensorRT builds on the first load and caches; the other GPUs' loads must not race it."""
    import threading

    from lesionaug.augment import workers

    events, lock = [], threading.Lock()

    def fake_load(engine_dir, provider, *, device, threads, **options):
        with lock:
            events.append(("start", device))
        with lock:
            events.append(("end", device))
        return device

    monkeypatch.setattr(workers.Engine, "load", staticmethod(fake_load))
    assert workers.load_engines("engine", "tensorrt", [3, 1, 2]) == [3, 1, 2]
    assert events[:2] == [("start", 3), ("end", 3)]  # done before any other starts
    assert sorted(events[2:]) == [("end", 1), ("end", 2), ("start", 1), ("start", 2)]
