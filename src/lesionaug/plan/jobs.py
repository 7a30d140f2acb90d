"""The generation plan: what pair k will be, decided before any model runs.

Job k's labels, prompt, mask seed and noise seed come from (master seed, k) alone (``seeds.py``),
so job k is the same in a plan of 10 jobs or of 5,000, in any batch size and in any shard.
A plan is pure data: it serialises to JSON and back, and its hash covers everything it was made
from (dataset fingerprint, training labels, configs, seed, n), so two runs with the same hash
generate the same pairs.

A plan holds its jobs as a ``JobSequence``: the selected indices (a ``range`` for a whole plan or a
shard) and what a job is made from, each job made when it is asked for. Building a plan of
9,999,999 jobs takes no time and no memory; walking it costs about 40 us a job.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import overload

import numpy as np

from lesionaug.dataset.labels import Labels, synthetic_labels
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


SHARD_COUNT_ENV = "LESIONAUG_SHARD_COUNT"  # the shard count where the scheduler gives only an index


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """Parse ``i/N`` (e.g. ``0/4``), or ``auto`` / ``auto/N``: the shard the scheduler gave this task."""
    stripped = text.strip()
    if stripped == "auto" or stripped.startswith("auto/"):
        return scheduler_shard(stripped, os.environ if environ is None else environ)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise UsageError(f"malformed shard {text!r}", fix="use --shard i/N, e.g. --shard 0/4, or --shard auto")
    return Shard(int(match.group(1)), int(match.group(2)))


def _env_int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise UsageError(f"{name}={environ[name]!r} is not a whole number", fix="check the job script") from None


def scheduler_shard(text: str, environ: Mapping[str, str]) -> Shard:
    """The shard of a SLURM array task or a Kubernetes Indexed Job, from their environment variables.

    SLURM: task ``SLURM_ARRAY_TASK_ID`` of the array ``SLURM_ARRAY_TASK_MIN..MAX`` (step
    ``SLURM_ARRAY_TASK_STEP``), or of ``SLURM_ARRAY_TASK_COUNT`` tasks numbered from 0. Kubernetes:
    ``JOB_COMPLETION_INDEX``, with the Job's completions given as ``auto/N`` or ``LESIONAUG_SHARD_COUNT``.
    """
    given = None
    if text != "auto":
        tail = text.split("/", 1)[1].strip()
        if not tail.isdigit() or int(tail) < 1:
            raise UsageError(f"malformed shard {text!r}", fix="use --shard auto or --shard auto/N with N >= 1")
        given = int(tail)
    if "SLURM_ARRAY_TASK_ID" in environ:
        task = _env_int(environ, "SLURM_ARRAY_TASK_ID")
        if "SLURM_ARRAY_TASK_MIN" in environ and "SLURM_ARRAY_TASK_MAX" in environ:
            low, high = _env_int(environ, "SLURM_ARRAY_TASK_MIN"), _env_int(environ, "SLURM_ARRAY_TASK_MAX")
            step = _env_int(environ, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in environ else 1
            index, count = (task - low) // max(step, 1), (high - low) // max(step, 1) + 1
            listed = environ.get("SLURM_ARRAY_TASK_COUNT")
            if listed is not None and listed.isdigit() and int(listed) != count:
                raise UsageError(f"the SLURM array has gaps ({listed} tasks in {low}-{high})",
                                 fix="submit a contiguous array, e.g. sbatch --array=0-7")
        elif "SLURM_ARRAY_TASK_COUNT" in environ:
            index, count = task, _env_int(environ, "SLURM_ARRAY_TASK_COUNT")
        else:
            raise UsageError("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT or MIN/MAX",
                             fix="run under sbatch --array, or pass --shard i/N")
        source = "SLURM array"
    elif "JOB_COMPLETION_INDEX" in environ:
        index = _env_int(environ, "JOB_COMPLETION_INDEX")
        count = given if given is not None else (
            _env_int(environ, SHARD_COUNT_ENV) if SHARD_COUNT_ENV in environ else None)
        if count is None:
            raise UsageError("JOB_COMPLETION_INDEX is set but not how many shards there are",
                             fix=f"pass --shard auto/N (N = the Job's completions) or set {SHARD_COUNT_ENV}")
        source = "Kubernetes Indexed Job"
    else:
        raise UsageError("--shard auto found no scheduler shard (neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX "
                         "is set)", fix="run it as a SLURM array task or a Kubernetes Indexed Job, or pass --shard i/N")
    if given is not None and given != count:
        raise UsageError(f"--shard {text} says {given} shards but the {source} has {count}",
                         fix="pass --shard auto, or make the counts agree")
    return Shard(index, count)


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
            raise UsageError(f"--n must be between 1 and {MAX_JOBS}, got {self.n}", fix="use e.g. --n 100")
        if not isinstance(self.seed, int) or not 0 <= self.seed < MAX_SEED:
            raise UsageError(f"--seed must be an integer in [0, 2**63), got {self.seed}", fix="use e.g. --seed 0")
        check_template(self.template)
        if self.mask_source not in MASK_SOURCES:
            raise UsageError(
                f"unknown mask source {self.mask_source!r}", fix=f"use one of {', '.join(MASK_SOURCES)}"
            )
        w, h = self.size
        if not (isinstance(w, int) and isinstance(h, int)) or not (8 <= w <= 8192 and 8 <= h <= 8192):
            raise UsageError(f"--size must be between 8 and 8192 pixels per side, got {w}x{h}",
                             fix="use e.g. --size 512")
        if not _PREFIX.match(self.prefix):
            raise UsageError(
                f"--prefix {self.prefix!r} is not a safe file-name prefix",
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
    """Job ``k`` of a plan: a function of (config, training labels, k) only.

    Its labels are a training label set's, without what identifies that real lesion
    (``labels.synthetic_labels``: no ``lesion_id``, a ``source_lesion_id`` instead).
    """
    rng = np.random.default_rng(derive_seed(config.seed, k, LABEL_STREAM))
    labels = synthetic_labels(sampler.sample(config.labels, rng))
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


class JobSequence(Sequence[Job]):
    """The jobs at ``indices`` (ascending), each made on demand by ``make_job``: memory does not grow with n.

    Indexing and iteration give ``Job`` objects, a slice gives a tuple of them; it compares equal to
    any sequence of the same jobs (a tuple from ``GenerationPlan.from_dict``, another ``JobSequence``).
    """

    def __init__(self, config: PlanConfig, sampler: LabelSampler, indices: range | tuple[int, ...]) -> None:
        self.config, self.sampler, self.indices = config, sampler, indices

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, position: int) -> Job: ...
    @overload
    def __getitem__(self, position: slice) -> tuple[Job, ...]: ...
    def __getitem__(self, position):
        if isinstance(position, slice):
            return tuple(make_job(self.config, self.sampler, k) for k in self.indices[position])
        return make_job(self.config, self.sampler, self.indices[position])

    def __iter__(self) -> Iterator[Job]:
        for k in self.indices:
            yield make_job(self.config, self.sampler, k)

    def job(self, k: int) -> Job | None:
        """Job ``k`` if this sequence holds it (O(1) for a range, a binary search otherwise)."""
        if isinstance(self.indices, range):
            return make_job(self.config, self.sampler, k) if k in self.indices else None
        at = bisect.bisect_left(self.indices, k)
        found = at < len(self.indices) and self.indices[at] == k
        return make_job(self.config, self.sampler, k) if found else None

    def select(self, shard: Shard) -> JobSequence:
        if isinstance(self.indices, range) and self.indices.step == 1 and self.indices.start == 0:
            return JobSequence(self.config, self.sampler, range(shard.index, self.indices.stop, shard.count))
        return JobSequence(self.config, self.sampler, tuple(k for k in self.indices if shard.selects(k)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobSequence) and other.config == self.config and other.sampler is self.sampler:
            # The same recipe: equal exactly when the indices are (ranges compare in O(1)).
            a, b = self.indices, other.indices
            if isinstance(a, range) and isinstance(b, range):
                return a == b
            return len(a) == len(b) and all(x == y for x, y in zip(a, b))
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # equal to tuples of the same jobs, so not hashable

    def __repr__(self) -> str:
        return f"JobSequence({len(self)} jobs of n={self.config.n})"


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
    jobs: Sequence[Job]  # a JobSequence, or a tuple read back from JSON
    shard: Shard | None = None

    def job(self, k: int) -> Job | None:
        """Job ``k`` when this plan (or shard) has it, else None; never walks the plan when lazy."""
        if isinstance(self.jobs, JobSequence):
            return self.jobs.job(k)
        return next((job for job in self.jobs if job.index == k), None)

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
        if isinstance(self.jobs, JobSequence):
            return replace(self, jobs=self.jobs.select(shard), shard=shard)
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


def selected_indices(n: int, shard: Shard | None = None) -> range:
    """The job indices of a plan of ``n`` jobs (of one shard, when given): known before any job is made."""
    return range(n) if shard is None else range(shard.index, n, shard.count)


def build_plan(
    config: PlanConfig,
    sampler: LabelSampler,
    dataset_fingerprint: str,
    train_fingerprint: str = "",
    *,
    shard: Shard | None = None,
    indices: Iterable[int] | None = None,
) -> GenerationPlan:
    """The plan's jobs (only the shard's, when given; only ``indices``, when given), made lazily."""
    sampler.check(config.labels)
    if indices is None:
        selected: range | tuple[int, ...] = selected_indices(config.n, shard)
    else:
        selected = tuple(k for k in sorted(set(indices)) if 0 <= k < config.n and (shard is None or shard.selects(k)))
    jobs = JobSequence(config, sampler, selected)
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
