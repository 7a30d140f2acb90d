"""`augment --min-fidelity`: attempts with seeds of their own, drop or keep, the same bytes twice."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from augment_runs import invoke, output_digest, trained_run

from lesionaug.augment.fidelity_filter import (
    CheckedImage,
    FidelityFilter,
    FilterTally,
    attempt_noise_seed,
    fidelity_filter_from_options,
    filtered_generator,
)
from lesionaug.errors import ConfigError, UsageError
from lesionaug.formats import MANIFEST_NAME, RUN_NAME
from lesionaug.output.pair_writer import PairRecord
from lesionaug.seeds import NOISE_STREAM, derive_attempt_seed, derive_seed


class Job:
    def __init__(self, k: int, seed: int = 7):
        self.record = PairRecord(f"SYN_{k}", k, "p", {}, 0, "model", derive_seed(seed, k, NOISE_STREAM))
        self.index = k


def fake_images(batch, masks, seeds):
    """An image whose every pixel is its noise seed mod 256: which seed made it can be read back."""
    return [np.full((4, 4, 3), seed % 256, np.uint8) for seed in seeds]


def score_by_pixel(image, mask):
    return float(image[0, 0, 0]) / 255.0


def test_attempt_one_is_the_plans_seed_and_later_attempts_have_their_own():
    job = Job(3)
    assert attempt_noise_seed(7, job.record, 1) == job.record.noise_seed
    seeds = [attempt_noise_seed(7, job.record, a) for a in (1, 2, 3)]
    assert len(set(seeds)) == 3 and seeds[1] == derive_attempt_seed(7, 3, 2)
    assert derive_attempt_seed(7, 3, 2) != derive_attempt_seed(7, 4, 2) != derive_attempt_seed(8, 3, 2)
    with pytest.raises(ValueError):
        derive_attempt_seed(7, 3, 1)


def _run(jobs, settings, done=frozenset()):
    tally = FilterTally(settings)
    generate = filtered_generator(fake_images, score_by_pixel, settings, 7, set(done), tally)
    return generate(jobs, [np.ones((4, 4), bool)] * len(jobs)), tally


def test_a_pair_is_retried_below_the_threshold_and_its_best_attempt_recorded():
    jobs = [Job(k) for k in range(12)]
    scores = {k: [attempt_noise_seed(7, j.record, a) % 256 / 255 for a in (1, 2, 3)] for k, j in enumerate(jobs)}
    threshold = 0.5
    out, tally = _run(jobs, FidelityFilter(threshold, max_attempts=3, on_reject="keep"))
    for k, item in enumerate(out):
        assert isinstance(item, CheckedImage) and item.image is not None
        tried = scores[k] if scores[k][0] < threshold else scores[k][:1]
        if scores[k][0] < threshold and max(scores[k][:2]) >= threshold:
            tried = scores[k][:2]  # the second attempt passed: no third
        best = int(np.argmax(tried)) + 1
        assert item.record.attempt == best and item.record.fidelity == pytest.approx(tried[best - 1])
        assert item.record.attempt_noise_seed == attempt_noise_seed(7, jobs[k].record, best)
        assert item.record.noise_seed == jobs[k].record.noise_seed  # the plan's seed stays: resume matches it
        assert item.image[0, 0, 0] == item.record.attempt_noise_seed % 256
    assert sum(tally.attempts.values()) == 12 and tally.dropped == []
    assert tally.kept_below == [k for k in range(12) if max(scores[k]) < threshold]
    # What any threshold would reject at the first attempt, from the same run.
    firsts = np.array([scores[k][0] for k in range(12)])
    summary = tally.to_dict()
    assert summary["first_attempt_below"] == {f"{t:.1f}": int((firsts < t).sum()) for t in (0.5, 0.6, 0.7, 0.8, 0.9)}
    assert summary["first_attempt_below"]["0.5"] == sum(scores[k][0] < threshold for k in range(12))
    assert summary["first_attempt_fidelity_mean"] == pytest.approx(firsts.mean())


def test_drop_writes_nothing_for_a_pair_that_never_passes_and_keep_writes_its_best():
    jobs = [Job(k) for k in range(12)]
    dropped, tally = _run(jobs, FidelityFilter(0.9, max_attempts=2, on_reject="drop"))
    kept, _ = _run(jobs, FidelityFilter(0.9, max_attempts=2, on_reject="keep"))
    gone = [k for k, item in enumerate(dropped) if item.image is None]
    assert gone == tally.dropped and 0 < len(gone) < 12
    assert all(kept[k].record.fidelity < 0.9 for k in gone)
    for k in set(range(12)) - set(gone):  # the survivors are the same pairs either way
        assert np.array_equal(dropped[k].image, kept[k].image) and dropped[k].record == kept[k].record


def test_pair_k_does_not_depend_on_its_batch():
    settings = FidelityFilter(0.6, max_attempts=4, on_reject="keep")
    whole, _ = _run([Job(k) for k in range(8)], settings)
    alone = [_run([Job(k)], settings)[0][0] for k in range(8)]
    assert [w.record for w in whole] == [a.record for a in alone]


def test_finished_jobs_of_a_resumed_batch_are_not_checked():
    out, tally = _run([Job(0), Job(1)], FidelityFilter(0.99), done={0})
    assert not isinstance(out[0], CheckedImage) and isinstance(out[1], CheckedImage)
    assert tally.to_dict()["n_checked"] == 1


def test_options_are_checked():
    assert fidelity_filter_from_options(None, None, None) is None
    assert fidelity_filter_from_options(0.7, None, None) == FidelityFilter(0.7, 3, "drop")
    with pytest.raises(UsageError):
        fidelity_filter_from_options(None, 2, None)
    with pytest.raises(ConfigError):
        FidelityFilter(1.5)
    with pytest.raises(UsageError):
        FidelityFilter(0.5, on_reject="maybe")


# -- through the command line, with the session's tiny engine and a tiny fidelity segmenter -------------


@pytest.fixture
def engine(tmp_path, monkeypatch):
    """A copy of the session's engine (the segmenter is cached beside it) and a tiny segmenter config."""
    from lesionaug.evaluate import pair_fidelity
    from lesionaug.evaluate.segmenter import SegmenterConfig

    monkeypatch.setattr(pair_fidelity, "FIDELITY_SEGMENTER", SegmenterConfig(
        image_size=32, channels=(8, 16, 32), epochs=3, device="cpu", augment="flips", seed=0))  # fmt: skip
    copy = tmp_path / "engine"
    shutil.copytree(trained_run().engine_dir, copy)
    card = json.loads((copy / "lesionaug.json").read_text())
    card.pop("model_dir", None)  # no model folder to cache beside: the engine folder is the place
    (copy / "lesionaug.json").write_text(json.dumps(card))
    return copy


def _augment(engine, out, *args):
    base = ["augment", str(trained_run().dataset), "--out", str(out), "--model", str(engine), "--steps", "2",
            "--guidance", "1.0", "--n", "8", "--batch-size", "3", "--synthetic-only", "--json", "-q"]  # fmt: skip
    result = invoke(*base, *args)
    assert result.exit_code == 0, result.stderr
    return result.envelope["data"]


def _manifest(out):
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


@pytest.mark.slow
def test_min_fidelity_through_augment_drop_keep_and_the_same_bytes_twice(engine, tmp_path):
    # 1. One attempt, nothing rejected: every pair's first-attempt fidelity, recorded.
    first = _augment(engine, tmp_path / "all", "--min-fidelity", "0", "--max-attempts", "1")
    assert first["n_generated"] == 8 and first["fidelity_filter"]["n_dropped"] == 0
    assert list((engine / "fidelity-segmenter").glob("*.safetensors"))  # cached beside the model
    fidelity = {e["index"]: e["fidelity"] for e in _manifest(tmp_path / "all")}
    assert all(e["attempt"] == 1 for e in _manifest(tmp_path / "all"))
    values = sorted(set(fidelity.values()))
    assert len(values) >= 2, values
    threshold = (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    passing = {k for k, f in fidelity.items() if f >= threshold}
    # 2. Drop: the pairs below the threshold are missing, named in the record; verify is content.
    dropped = _augment(engine, tmp_path / "drop", "--min-fidelity", f"{threshold}", "--max-attempts", "1")
    assert {e["index"] for e in _manifest(tmp_path / "drop")} == passing
    assert dropped["fidelity_filter"]["dropped_indices"] == sorted(set(fidelity) - passing)
    assert json.loads((tmp_path / "drop" / RUN_NAME).read_text())["fidelity_filter"]["n_dropped"] == 8 - len(passing)
    assert invoke("verify", str(tmp_path / "drop"), "-q").exit_code == 0
    # 3. Keep with retries: passing pairs are their first attempt, the rest their best of three.
    keep = _augment(engine, tmp_path / "keep", "--min-fidelity", f"{threshold}", "--max-attempts", "3",
                    "--on-reject", "keep")
    entries = {e["index"]: e for e in _manifest(tmp_path / "keep")}
    assert keep["n_generated"] == 8
    for k, entry in entries.items():
        if k in passing:
            assert entry["attempt"] == 1 and entry["fidelity"] == fidelity[k]
        else:
            assert entry["fidelity"] >= fidelity[k] and entry["attempt_noise_seed"] == (
                entry["noise_seed"] if entry["attempt"] == 1 else derive_attempt_seed(0, k, entry["attempt"]))
    assert output_digest(tmp_path / "keep") != {}
    again = _augment(engine, tmp_path / "again", "--min-fidelity", f"{threshold}", "--max-attempts", "3",
                     "--on-reject", "keep")
    assert again["fidelity_filter"] == keep["fidelity_filter"]
    assert output_digest(tmp_path / "again") == output_digest(tmp_path / "keep")
    # 4. Every run tells what each threshold would reject at the first attempt, whatever its own.
    for run in (first, dropped, keep):
        below = run["fidelity_filter"]["first_attempt_below"]
        assert below == {t: sum(f < float(t) for f in fidelity.values()) for t in ("0.5", "0.6", "0.7", "0.8", "0.9")}
    shown = invoke("augment", str(trained_run().dataset), "--out", str(tmp_path / "plain"), "--model", str(engine),
                   "--steps", "2", "--guidance", "1.0", "--n", "8", "--synthetic-only", "--min-fidelity", f"{threshold}",
                   "--max-attempts", "1")
    assert shown.exit_code == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("fidelity filter"))
    assert f"{8 - len(passing)} dropped" in line and "first attempts below 0.5" in line
