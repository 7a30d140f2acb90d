"""The generation plan: per-index seeds, shards, hash, serialisation, config validation."""

from __future__ import annotations

import json
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
    torch = pytest.importorskip("torch")
    seed = max(job.noise_seed for job in _plan(200, 123).jobs)
    torch.Generator("cpu").manual_seed(seed)


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
    with pytest.raises(ConfigError, match=message):
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
