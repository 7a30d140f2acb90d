"""The generation plan: what pair k will be, decided before any model runs.

Job k's labels, prompt, mask seed and noise seed come from (master seed, k) alone (``seeds.py``),
so job k is the same in a plan of 10 jobs or of 5,000, in any batch size and in any shard.
A plan is pure data: it serialises to JSON and back, and its hash covers everything it was made
from (dataset fingerprint, training labels, configs, seed, n), so two runs with the same hash
generate the same pairs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from lesionaug.dataset.labels import Labels
from lesionaug.errors import ConfigError, UsageError
from lesionaug.formats import PLAN_FORMAT
from lesionaug.masks.sampling import MASK_SOURCES, choose_source
from lesionaug.plan.prompts import (
    DEFAULT_TEMPLATE,
    LabelSampler,
    LabelSpec,
    build_prompt,
    check_template,
)
from lesionaug.seeds import (
    LABEL_STREAM,
    MASK_STREAM,
    MAX_SEED,
    NOISE_STREAM,
    derive_seed,
)

DEFAULT_PREFIX = "SYN_"
MAX_JOBS = 9_999_999  # ids have seven digits
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$|^$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the jobs k with k mod count == index."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"shard {self.index}/{self.count} does not exist", fix="use --shard i/N with 0 <= i < N"
            )

    def selects(self, k: int) -> bool:
        return k % self.count == self.index

    def describe(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``i/N`` (e.g. ``0/4``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise UsageError(f"malformed shard {text!r}", fix="use --shard i/N, e.g. --shard 0/4")
    return Shard(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class PlanConfig:
    """Everything a plan depends on besides the dataset; validated here and nowhere else."""

    n: int
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    labels: LabelSpec = field(default_factory=LabelSpec)
    mask_source: str = "model"
    size: tuple[int, int] = (512, 512)
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or not 1 <= self.n <= MAX_JOBS:
            raise ConfigError(f"--n must be between 1 and {MAX_JOBS}, got {self.n}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < MAX_SEED:
            raise ConfigError(f"--seed must be an integer in [0, 2**63), got {self.seed}")
        check_template(self.template)
        if self.mask_source not in MASK_SOURCES:
            raise ConfigError(
                f"unknown mask source {self.mask_source!r}", fix=f"use one of {', '.join(MASK_SOURCES)}"
            )
        w, h = self.size
        if not (isinstance(w, int) and isinstance(h, int)) or not (8 <= w <= 8192 and 8 <= h <= 8192):
            raise ConfigError(f"size must be between 8 and 8192 pixels per side, got {w}x{h}")
        if not _PREFIX.match(self.prefix):
            raise ConfigError(
                f"id prefix {self.prefix!r} is not a safe file-name prefix",
                fix="use letters, digits, '_', '-' or '.', at most 32, not starting with '.', '_' or '-'",
            )

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "seed": self.seed,
            "template": self.template,
            "labels": self.labels.to_dict(),
            "mask_source": self.mask_source,
            "size": list(self.size),
            "prefix": self.prefix,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PlanConfig:
        return cls(
            n=int(data["n"]),
            seed=int(data["seed"]),
            template=data["template"],
            labels=LabelSpec.from_dict(data["labels"]),
            mask_source=data["mask_source"],
            size=(int(data["size"][0]), int(data["size"][1])),
            prefix=data["prefix"],
        )


@dataclass(frozen=True)
class Job:
    """One pair to generate."""

    index: int
    id: str
    labels: Labels
    prompt: str
    mask_source: str  # "model" or "real" ("mixed" is resolved per job)
    mask_seed: int
    noise_seed: int

    @property
    def diagnosis(self) -> str | None:
        return self.labels.diagnosis

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "id": self.id,
            "prompt": self.prompt,
            "labels": self.labels.to_dict(),
            "diagnosis": self.diagnosis,
            "mask_source": self.mask_source,
            "mask_seed": self.mask_seed,
            "noise_seed": self.noise_seed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        return cls(
            index=int(data["index"]),
            id=data["id"],
            labels=Labels.from_dict(data["labels"]),
            prompt=data["prompt"],
            mask_source=data["mask_source"],
            mask_seed=int(data["mask_seed"]),
            noise_seed=int(data["noise_seed"]),
        )


def job_id(prefix: str, k: int) -> str:
    return f"{prefix}{k + 1:07d}"


def make_job(config: PlanConfig, sampler: LabelSampler, k: int) -> Job:
    """Job ``k`` of a plan: a function of (config, training labels, k) only."""
    rng = np.random.default_rng(derive_seed(config.seed, k, LABEL_STREAM))
    labels = sampler.sample(config.labels, rng)
    mask_seed = derive_seed(config.seed, k, MASK_STREAM)
    return Job(
        index=k,
        id=job_id(config.prefix, k),
        labels=labels,
        prompt=build_prompt(labels, config.template),
        mask_source=choose_source(config.mask_source, mask_seed),
        mask_seed=mask_seed,
        noise_seed=derive_seed(config.seed, k, NOISE_STREAM),
    )


def plan_hash(config: PlanConfig, dataset_fingerprint: str, train_fingerprint: str, labels_digest: str) -> str:
    """sha256 over everything the jobs are made from (the shard is a selection, not part of it)."""
    identity = {
        "format": PLAN_FORMAT,
        "dataset_fingerprint": dataset_fingerprint,
        "train_fingerprint": train_fingerprint,
        "labels_digest": labels_digest,
        "config": config.to_dict(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class GenerationPlan:
    """The jobs of a plan (all of them, or one shard's)."""

    config: PlanConfig
    dataset_fingerprint: str  # the whole dataset (the augmented copy holds all of it)
    train_fingerprint: str  # the training split the label sampler and shape model were fitted on
    labels_digest: str
    plan_hash: str
    jobs: tuple[Job, ...]
    shard: Shard | None = None

    def label_counts(self) -> dict[str, dict[str, int]]:
        """How many jobs get each diagnosis, attribute and mask source ('none' = unlabelled)."""
        diagnoses = Counter(job.diagnosis or "none" for job in self.jobs)
        attributes = Counter(a for job in self.jobs for a in job.labels.attributes)
        sources = Counter(job.mask_source for job in self.jobs)
        return {
            "diagnosis": dict(sorted(diagnoses.items())),
            "attributes": dict(sorted(attributes.items())),
            "mask_source": dict(sorted(sources.items())),
        }

    def select(self, shard: Shard | None) -> GenerationPlan:
        """This plan's jobs in ``shard`` (the whole plan when None)."""
        if shard is None:
            return self
        if self.shard is not None:
            raise UsageError("cannot shard a plan that is already a shard")
        jobs = tuple(job for job in self.jobs if shard.selects(job.index))
        return replace(self, jobs=jobs, shard=shard)

    def to_dict(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "plan_hash": self.plan_hash,
            "dataset_fingerprint": self.dataset_fingerprint,
            "train_fingerprint": self.train_fingerprint,
            "labels_digest": self.labels_digest,
            "config": self.config.to_dict(),
            "shard": self.shard.describe() if self.shard else None,
            "jobs": [job.to_dict() for job in self.jobs],
        }

    @classmethod
    def from_dict(cls, data: dict) -> GenerationPlan:
        if data.get("format") != PLAN_FORMAT:
            raise ConfigError(f"not a generation plan (format {data.get('format')!r}, expected {PLAN_FORMAT})")
        config = PlanConfig.from_dict(data["config"])
        fingerprints = (data["dataset_fingerprint"], data["train_fingerprint"], data["labels_digest"])
        if plan_hash(config, *fingerprints) != data["plan_hash"]:
            raise ConfigError("plan hash does not match its contents", fix="rebuild the plan instead of editing it")
        shard = parse_shard(data["shard"]) if data.get("shard") else None
        jobs = tuple(Job.from_dict(j) for j in data["jobs"])
        return cls(config, *fingerprints, data["plan_hash"], jobs, shard)


def build_plan(
    config: PlanConfig,
    sampler: LabelSampler,
    dataset_fingerprint: str,
    train_fingerprint: str = "",
    *,
    shard: Shard | None = None,
    indices: Iterable[int] | None = None,
) -> GenerationPlan:
    """The plan's jobs (only the shard's, when given; only ``indices``, when given)."""
    sampler.check(config.labels)
    selected = range(config.n) if indices is None else sorted(set(indices))
    jobs = tuple(
        make_job(config, sampler, k) for k in selected if 0 <= k < config.n and (shard is None or shard.selects(k))
    )
    digest = sampler.digest()
    return GenerationPlan(
        config=config,
        dataset_fingerprint=dataset_fingerprint,
        train_fingerprint=train_fingerprint,
        labels_digest=digest,
        plan_hash=plan_hash(config, dataset_fingerprint, train_fingerprint, digest),
        jobs=jobs,
        shard=shard,
    )
