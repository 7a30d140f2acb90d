"""The generation plan: per-index seeds, shards, hash, serialisation, config validation."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesionaug.augment.options import (
    augment_options,
    label_spec_from_options,
    parse_size,
)
from lesionaug.dataset.labels import Labels
from lesionaug.errors import ConfigError, UsageError
from lesionaug.plan.jobs import (
    GenerationPlan,
    PlanConfig,
    Shard,
    build_plan,
    job_id,
    make_job,
    parse_shard,
)
from lesionaug.plan.prompts import LabelSpec, fit_label_sampler, parse_label_spec
from lesionaug.seeds import MAX_SEED, derive_seed

SAMPLER = fit_label_sampler(
    [Labels(diagnosis="nv", attributes=("pigment_network",), site="back")] * 5
    + [Labels(diagnosis="mel", attributes=("streaks", "globules"), age=70)] * 3
    + [Labels(diagnosis="bkl")] * 2
)


def _plan(n=20, seed=0, **kw) -> GenerationPlan:
    shard = kw.pop("shard", None)
    return build_plan(PlanConfig(n=n, seed=seed, **kw), SAMPLER, "dataset-fp", "train-fp", shard=shard)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, MAX_SEED - 1),
    n1=st.integers(1, 60),
    n2=st.integers(1, 60),
    labels=st.sampled_from(["match", "balanced", "mel=0.6,nv=0.4"]),
    source=st.sampled_from(["model", "real", "mixed"]),
)
def test_job_k_does_not_depend_on_n(seed, n1, n2, labels, source):
    spec = parse_label_spec(labels)
    small = _plan(n1, seed, labels=spec, mask_source=source)
    large = _plan(n2, seed, labels=spec, mask_source=source)
    common = min(n1, n2)
    assert small.jobs[:common] == large.jobs[:common]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 80), count=st.integers(1, 9), seed=st.integers(0, 1000))
def test_shards_partition_the_plan(n, count, seed):
    full = _plan(n, seed)
    shards = [_plan(n, seed, shard=Shard(i, count)) for i in range(count)]
    union = sorted((job for s in shards for job in s.jobs), key=lambda j: j.index)
    assert tuple(union) == full.jobs
    assert all(s.plan_hash == full.plan_hash for s in shards)
    for i, s in enumerate(shards):
        assert all(job.index % count == i for job in s.jobs)
        assert s.jobs == full.select(Shard(i, count)).jobs


def test_jobs_by_index_match_the_full_plan():
    full = _plan(50, 7)
    some = build_plan(full.config, SAMPLER, "dataset-fp", "train-fp", indices=[3, 41, 17])
    assert some.jobs == (full.jobs[3], full.jobs[17], full.jobs[41])
    assert make_job(full.config, SAMPLER, 41) == full.jobs[41]


def test_job_fields():
    plan = _plan(12, 5, prefix="AUG-")
    ids = [job.id for job in plan.jobs]
    assert ids[0] == "AUG-0000001" and ids[-1] == "AUG-0000012" and len(set(ids)) == 12
    assert job_id("SYN_", 9_999_998) == "SYN_9999999"
    for job in plan.jobs:
        assert 0 <= job.noise_seed < 2**63 and 0 <= job.mask_seed < 2**63
        assert job.mask_source == "model"
        assert job.prompt.startswith("a dermoscopic image of ")
    assert len({job.noise_seed for job in plan.jobs}) == 12
    assert len({job.mask_seed for job in plan.jobs}) == 12


def test_noise_seed_feeds_a_torch_generator():
    """The largest noise seed of a plan is taken by torch whole: not wrapped, not truncated, and it
    fixes the noise (the sampler draws the initial latents from exactly such a generator)."""
    torch = pytest.importorskip("torch")
    seed = max(job.noise_seed for job in _plan(200, 123).jobs)
    assert 2**62 <= seed < 2**63  # the top bit range is used, so a signed 64-bit overflow would show here
    generator = torch.Generator("cpu").manual_seed(seed)
    assert generator.initial_seed() == seed
    first = torch.randn(4, generator=generator)
    again = torch.randn(4, generator=torch.Generator("cpu").manual_seed(seed))
    other = torch.randn(4, generator=torch.Generator("cpu").manual_seed(seed - 1))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_seeds_are_streams_of_a_seed_sequence():
    state = np.random.SeedSequence(42, spawn_key=(9,)).generate_state(3, np.uint64)
    assert derive_seed(42, 9, 1) == int(state[1] >> np.uint64(1))
    assert derive_seed(42, 9, 0) != derive_seed(42, 10, 0) != derive_seed(43, 9, 0)
    with pytest.raises(ValueError):
        derive_seed(-1, 0, 0)


def test_mixed_source_resolves_per_job():
    sources = {job.mask_source for job in _plan(60, 1, mask_source="mixed").jobs}
    assert sources == {"model", "real"}


def test_plan_hash_covers_everything_it_is_made_from():
    base = _plan(10, 0)
    assert _plan(10, 0).plan_hash == base.plan_hash
    variants = [
        _plan(11, 0),
        _plan(10, 1),
        _plan(10, 0, template="{diagnosis}"),
        _plan(10, 0, labels=LabelSpec(mode="balanced")),
        _plan(10, 0, mask_source="real"),
        _plan(10, 0, size=(256, 256)),
        _plan(10, 0, prefix="X"),
        build_plan(base.config, SAMPLER, "other-dataset", "train-fp"),
        build_plan(base.config, SAMPLER, "dataset-fp", "other-train"),
        build_plan(base.config, fit_label_sampler([Labels(diagnosis="nv")] * 3), "dataset-fp", "train-fp"),
    ]
    hashes = {v.plan_hash for v in variants} | {base.plan_hash}
    assert len(hashes) == len(variants) + 1
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)


def test_round_trip_through_json():
    plan = _plan(15, 3, labels=parse_label_spec("mel=1,nv=1"), shard=Shard(1, 3))
    text = json.dumps(plan.to_dict())
    again = GenerationPlan.from_dict(json.loads(text))
    assert again == plan
    tampered = json.loads(text)
    tampered["config"]["seed"] = 4
    with pytest.raises(ConfigError, match="hash does not match"):
        GenerationPlan.from_dict(tampered)
    with pytest.raises(ConfigError, match="not a generation plan"):
        GenerationPlan.from_dict({"format": "something else"})


def test_label_counts():
    counts = _plan(40, 0, labels=parse_label_spec("mel=1")).label_counts()
    assert counts["diagnosis"] == {"mel": 40}
    assert counts["attributes"] == {"globules": 40, "streaks": 40}
    assert counts["mask_source"] == {"model": 40}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "--n must be"),
        ({"n": 10_000_000}, "--n must be"),
        ({"seed": -1}, "--seed"),
        ({"seed": 2**63}, "--seed"),
        ({"template": "{colour}"}, "unknown field"),
        ({"mask_source": "ellipses"}, "unknown mask source"),
        ({"size": (4, 512)}, "size must be"),
        ({"prefix": "../x"}, "prefix"),
        ({"prefix": "a b"}, "prefix"),
    ],
)
def test_plan_config_is_validated_in_one_place(kwargs, message):
    base = {"n": 5}
    base.update(kwargs)
    with pytest.raises(UsageError, match=message):
        PlanConfig(**base)


def test_parse_shard():
    assert parse_shard("0/4") == Shard(0, 4)
    assert parse_shard(" 3 / 4 ") == Shard(3, 4)
    for bad in ("4/4", "1/0", "a/b", "1", "-1/3", "1/2/3"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_option_parsing():
    assert parse_size("512") == (512, 512)
    assert parse_size("640x480") == (640, 480)
    with pytest.raises(UsageError):
        parse_size("big")
    assert label_spec_from_options("balanced").mode == "balanced"
    assert label_spec_from_options("match", "mel=1").weights == (("mel", 1.0),)
    with pytest.raises(UsageError, match="both choose"):
        label_spec_from_options("balanced", "mel=1")
    options = augment_options("ds", 10, shard="1/2", size="256x128", template="{diagnosis}", prefix="S")
    assert options.shard == Shard(1, 2)
    assert options.plan == replace(PlanConfig(n=10), size=(256, 128), template="{diagnosis}", prefix="S")
    assert json.loads(json.dumps(options.to_dict()))["shard"] == "1/2"


# ---- lazy plans: job k as before, at any n --------------------------------------------------------


@pytest.mark.parametrize(
    "labels, source, shard, n_jobs, jobs_sha256",
    [
        # Pinned from the eager plans of commit f609f19 (before jobs were made on demand).
        ("match", "mixed", None, 60, "d79e936ec6a0985dcf7435a6def57cddd7f79a941bcbd7c35b21fbf6592527bd"),
        ("mel=0.6,nv=0.4", "model", Shard(1, 3), 20,
         "6aaa275c8848569962fc576cfdc9ad770e1bdfcec216ef9832277892c17751f8"),
    ],
)
def test_jobs_are_byte_identical_to_the_pinned_plans(labels, source, shard, n_jobs, jobs_sha256):
    plan = _plan(60, 11, labels=parse_label_spec(labels), mask_source=source, shard=shard)
    text = json.dumps([job.to_dict() for job in plan.jobs], sort_keys=True)
    assert len(plan.jobs) == n_jobs
    assert hashlib.sha256(text.encode()).hexdigest() == jobs_sha256


def test_a_plan_of_9999999_jobs_is_made_lazily():
    tracemalloc.start()
    started = time.perf_counter()
    plan = _plan(9_999_999, 3)
    shard = plan.select(Shard(2, 5))
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20 and seconds < 1  # eager, it was about 400 s and gigabytes
    assert len(plan.jobs) == 9_999_999
    assert len(shard.jobs) == 2_000_000  # 2, 7, ..., 9999997
    assert plan.jobs[-1] == make_job(plan.config, SAMPLER, 9_999_998) and plan.jobs[-1].id == "SYN_9999999"
    assert shard.jobs[1] == plan.jobs[7] == shard.job(7)
    assert shard.job(8) is None and plan.job(9_999_999) is None and plan.job(-1) is None


def test_a_lazy_plan_equals_the_same_jobs_made_eagerly():
    plan = _plan(30, 4, mask_source="mixed")
    eager = tuple(make_job(plan.config, SAMPLER, k) for k in range(30))
    assert plan.jobs == eager and eager == plan.jobs
    assert plan.jobs[5:8] == eager[5:8] and list(plan.jobs) == list(eager)
    assert plan.jobs != eager[:-1] and plan.jobs != _plan(30, 5).jobs
    some = build_plan(plan.config, SAMPLER, "dataset-fp", "train-fp", indices=[29, 3, 3, 40, -1])
    assert some.jobs == (eager[3], eager[29])  # sorted, unique, inside the plan
    assert some.job(29) == eager[29] and some.job(4) is None
    assert plan.select(Shard(1, 4)).jobs == tuple(j for j in eager if j.index % 4 == 1)


def test_a_job_does_not_inherit_the_real_lesions_identity():
    real = Labels(
        diagnosis="nv",
        attributes=("globules",),
        site="back",
        extra=(
            ("copyright_license", "CC-BY-NC"),
            ("diagnosis_confirm_type", "histopathology"),
            ("dx_type", "histo"),
            ("fitzpatrick_skin_type", "II"),
            ("lesion_id", "HAM_0000010"),
        ),
    )
    job = make_job(PlanConfig(n=1), fit_label_sampler([real]), 0)
    assert job.labels.to_dict() == {
        "diagnosis": "nv",
        "attributes": ["globules"],
        "site": "back",
        "extra": {"fitzpatrick_skin_type": "II", "source_lesion_id": "HAM_0000010"},
    }
    assert job.prompt == "a dermoscopic image of melanocytic nevus with globules on the back"
    # Without a lesion id there is no source to record.
    plain = make_job(PlanConfig(n=1), fit_label_sampler([Labels(diagnosis="mel", extra=(("dx_type", "histo"),))]), 0)
    assert plain.labels.to_dict() == {"diagnosis": "mel"}
