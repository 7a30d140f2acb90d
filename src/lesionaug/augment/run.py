"""``lesionaug augment``: a complete, verifiable, resumable augmented copy of a dataset.

    data = run_augment(options, reporter)   # options: AugmentOptions with .generation

The steps, in order: plan the jobs (no model), check the output folder (never the input, never a
folder lesionaug did not make, the same plan unless ``--force``), check free space, lock the
output, find or make the engine, link the originals, generate and write the pairs that are not
there yet, then write label files, the manifest in job order and the run record. A run stopped
at any point (SIGKILL, SIGINT, a full disk) is resumed by running the same command again, and the
result is byte-identical to an uninterrupted run (except ``lesionaug-run.json``'s timings).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesionaug import __version__
from lesionaug.atomic_files import remove_temporaries
from lesionaug.augment.fidelity_filter import FilterTally, ScorerFactory, filtered_generator
from lesionaug.augment.loop import LoopJobs
from lesionaug.augment.model_choice import (
    dataset_model,
    default_budget,
    resolve_given_model,
)
from lesionaug.augment.model_template import with_model_template
from lesionaug.augment.output_size import resolution_note, with_dataset_size
from lesionaug.augment.preparation import (
    index_dataset,
    plan_from_index,
    training_skipped,
)
from lesionaug.augment.stop import StopRequest
from lesionaug.augment.workers import load_engines, run_workers
from lesionaug.engine.card import EngineCard
from lesionaug.engine.gan_runtime import GanEngine
from lesionaug.engine.provider_options import ShapeProfile
from lesionaug.engine.providers import resolve_provider
from lesionaug.engine.sampler import generate
from lesionaug.environment import environment_record
from lesionaug.errors import ConfigError, Interrupted, PartialFailure
from lesionaug.formats import MANIFEST_NAME
from lesionaug.masks.sampling import sample_mask
from lesionaug.output.disk_space import (
    RUN_BYTES_PER_PAIR,
    can_hard_link,
    check_free_space,
    check_memory,
    estimate_output_bytes,
)
from lesionaug.output.folder import check_link_mode, finish_output, link_originals
from lesionaug.output.layout import plan_output
from lesionaug.output.lock import OutputLock
from lesionaug.output.manifest import ManifestAppender
from lesionaug.output.pair_writer import GenerationStamp, PairWriter
from lesionaug.output.resume_state import (
    check_previous_run,
    clear_previous_outputs,
    count_listed_pairs,
    finished_entries,
    only_n_changed,
)
from lesionaug.output.run_record import (
    check_output_folder,
    read_run_record,
    write_run_record,
)
from lesionaug.plan.jobs import selected_indices
from lesionaug.progress import SILENT, Reporter

RESULT_KEYS = ("out", "manifest", "n_generated", "n_skipped_existing", "n_failed", "plan_hash")


def default_out(dataset_root: Path) -> Path:
    """``./isic`` -> ``./isic-augmented``."""
    root = Path(dataset_root)
    return root.parent / f"{root.name}-augmented"


def generation_size(size: tuple[int, int], resolution: int | None, multiple: int) -> tuple[int, int]:
    """The size the engine generates at for pairs of ``size``: the model's resolution on the long side."""
    w, h = size
    scale = (resolution / max(w, h)) if resolution else 1.0
    return max(multiple, round(w * scale / multiple) * multiple), max(multiple, round(h * scale / multiple) * multiple)


def control_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A pair's mask at the generation size (area average, then threshold: no staircase from nearest)."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    from PIL import Image

    small = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).resize(size, Image.Resampling.BOX)
    return np.asarray(small) > 127


def output_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A generated image at the pair's size (Lanczos), unchanged when the sizes agree."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _resolve_model(options, index, gen, provider: str, reporter: Reporter):
    precision = "fp16" if provider in ("cuda", "tensorrt") else "fp32"
    if gen.model is not None:
        return resolve_given_model(gen.model, precision, reporter, allow_pickle=gen.allow_pickle)
    budget = default_budget(gen.model_size, gen.train_steps)
    return dataset_model(index, budget, precision, no_train=gen.no_train, seed=options.plan.seed, reporter=reporter,
                         real_subset=options.real_subset)


def warn_generator_extra_data(resolved, fitted_ids: list[str], options, reporter: Reporter) -> None:
    """A ``--model`` trained on real pairs outside ``--real-fraction``/``--real-count``'s subset is
    allowed here, but ``evaluate`` will refuse its pairs: say so before generating."""
    generator_ids = resolved.model_card.get("train_ids")
    if options.real_subset is None or not isinstance(generator_ids, list):
        return
    extra = set(map(str, generator_ids)) - set(fitted_ids)
    if extra:
        reporter.warn(
            f"the generator ({resolved.engine_dir}) was trained on {len(extra)} real pairs outside the "
            f"{len(fitted_ids)} chosen by {options.real_subset.option()}; `lesionaug evaluate` will refuse "
            "these pairs (or, with --allow-generator-extra-data, say so at the top of the report)"
        )


def run_augment(options, reporter: Reporter = SILENT, pair_scorer: ScorerFactory | None = None) -> dict:
    """Generate the plan's pairs into the output folder; see the module docstring."""
    gen = options.generation
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # 1. The dataset, indexed and checked; then the output folder: never inside the input, never foreign.
    index = index_dataset(options, reporter)
    options = with_dataset_size(options, index)  # no --size: the dataset's most common image size
    out = Path(gen.out) if gen.out is not None else default_out(index.root)
    previous = check_output_folder(out, index.root)
    output = plan_output(index, gen.image_format, synthetic_only=gen.synthetic_only, masks_dir=options.masks)

    # 2. Room for the run, from the counts alone: disk space and memory are checked before planning.
    selected = selected_indices(options.plan.n, options.shard)
    listed = 0 if previous is None else count_listed_pairs(out, selected)
    _check_room(index, out, output, gen, options.plan.size, len(selected) - listed)
    check_memory(len(selected), RUN_BYTES_PER_PAIR, "pairs written by one run",
                 fix="lower --n, or split the run with --shard i/N and join the shards with `lesionaug merge`")

    # 3. The plan: samplers fitted, jobs laid out (lazily; no model yet); the same plan unless --force.
    options = with_model_template(options, reporter)  # no --prompt-template: the --model's own
    prepared = plan_from_index(options, index, reporter)
    plan = prepared.plan
    timings["plan_s"] = time.perf_counter() - t0
    settings = gen.sampler_settings()
    jobs_info = {"n": plan.config.n, "shard": [plan.shard.index, plan.shard.count] if plan.shard else None}
    identity = {"plan": plan.plan_hash, "sampler": asdict(settings), "output": output.identity(),
                "synthetic_only": gen.synthetic_only}
    if gen.fidelity_filter is not None:  # only then, so earlier outputs keep their identity
        identity["fidelity_filter"] = gen.fidelity_filter.to_dict()
    replacing = check_previous_run(out, previous, identity, jobs_info, force=gen.force)  # before any training
    _check_collisions(plan, output)

    # 4. Free space for what is left to write, now that the finished pairs of this plan are known.
    # The manifest is read (and its paths checked) even when replacing: nothing is written before that.
    found = [] if previous is None else finished_entries(out, plan, verify_hashes=False)
    done_before = 0 if replacing else len(found)
    estimate = _check_room(index, out, output, gen, plan.config.size, len(plan.jobs) - done_before)

    # 5. Lock the output (a second run stops here), then find or make the engine.
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(out, command="augment", break_lock=gen.break_lock)
    try:
        lock.acquire()
    except ConfigError:
        if created:
            _remove_if_empty(out)
        raise
    if lock.took_over and lock.took_over.get("pid") is not None:
        reporter.info(f"took over the lock of {lock.took_over.get('command', 'a run')} pid {lock.took_over['pid']}, "
                      "which no longer runs")
    try:
        check_link_mode(list(output.originals), out, gen.link)  # --link reflink fails here, not after generating
        run = LockedRun(options, prepared, out, output, identity, jobs_info, estimate, timings, t0, reporter)
        return _run_locked(run, pair_scorer)
    finally:
        lock.release()
        if created:
            _remove_if_empty(out)


def _check_room(index, out: Path, output, gen, size: tuple[int, int], n_pairs: int):
    """Raise ConfigError when ``n_pairs`` pairs and the originals would not fit; returns the estimate."""
    linked_free = gen.link == "reflink" or (gen.link == "hard" and can_hard_link(index.root, out))
    copy_bytes = 0 if linked_free else sum(p.stat().st_size for p, _ in output.originals)
    estimate = estimate_output_bytes(
        max(n_pairs, 0), size, output.layout.image_format, output.layout.mask_format,
        copy_bytes, sum(len(t.base) for t in output.label_targets),
    )
    check_free_space(out, estimate)
    return estimate


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _check_collisions(plan, output) -> None:
    """No synthetic pair may replace an original: each original whose path names a job id is checked."""
    originals = {rel for _, rel in output.originals}
    named = re.compile(f"(?=({re.escape(plan.config.prefix)}\\d{{7}}))")
    for rel in sorted(originals):
        for k in {int(m.group(1)[-7:]) - 1 for m in named.finditer(rel)}:
            job = plan.job(k)
            if job is None:
                continue
            for path in (output.layout.image_path(job.id), output.layout.mask_path(job.id)):
                if path in originals:
                    raise ConfigError(
                        f"synthetic pair {job.id} would replace the original {path}",
                        fix="choose another id prefix with --prefix",
                    )


@dataclass
class LockedRun:
    """What the steps of a run share once the output is locked: the options, the prepared plan, the
    output folder and its layout, the run's identity, the space estimate and the timings so far."""

    options: Any
    prepared: Any
    out: Path
    output: Any
    identity: dict
    jobs_info: dict
    estimate: Any
    timings: dict
    t0: float
    reporter: Reporter

    @property
    def gen(self):
        return self.options.generation

    @property
    def plan(self):
        return self.prepared.plan


@dataclass
class ChosenModel:
    """The engine the run generates with, and what choosing it decided."""

    resolved: Any
    provider: str
    identity: dict  # the run's identity with the engine's hash and the provider
    previous: dict | None
    replacing: bool
    fitted_ids: list[str]
    score: Callable | None = None  # --min-fidelity: the fidelity segmenter's scorer
    checks: FilterTally | None = None  # --min-fidelity: the attempts' tally


@dataclass
class Generation:
    """What the generation step left: the writer's tally, the loop's statistics, the first error."""

    engines: list
    gen_size: tuple[int, int]
    size_note: str | None
    originals: list[dict]
    tally: Any = None
    stats: Any = None
    per_worker: list = field(default_factory=list)
    error: BaseException | None = None


def _run_locked(run: LockedRun, pair_scorer: ScorerFactory | None = None) -> dict:
    """The steps that write: the engine, the run record, generation, then either the record of an
    incomplete run (and the error) or the finished folder."""
    chosen = _choose_model(run, pair_scorer)
    record, kept, done = _start_run_record(run, chosen)
    generation = _generate(run, chosen, record, done)
    record.update(_generation_record(run, chosen, generation))
    counts = {"n_jobs": len(run.plan.jobs), "n_generated": generation.tally.written, "n_skipped_existing": len(done),
              "n_failed": len(generation.tally.failed)}
    result = _result(run, chosen, generation, done)
    _stop_if_incomplete(run, record, counts, generation, result, done)
    # 8. Label files, the manifest in job order, the record marked complete.
    t = time.perf_counter()
    record["outputs"] = {**record["outputs"], "originals": sorted(generation.originals, key=lambda o: o["path"])}
    run.timings["total_s"] = time.perf_counter() - run.t0  # the record's total leaves out writing the record
    finish_output(run.out, {**record, "counts": counts, "timings": _round(run.timings)},
                  list(run.output.label_targets), kept + generation.tally.entries)
    run.timings["finish_s"] = time.perf_counter() - t
    run.timings["total_s"] = time.perf_counter() - run.t0
    result["timings"] = _round(run.timings)
    return result


def _choose_model(run: LockedRun, pair_scorer: ScorerFactory | None) -> ChosenModel:
    """The given or cached engine (training and exporting the default model on first need), checked
    against the run already in the folder; the fidelity segmenter when --min-fidelity asks for it."""
    gen, t = run.gen, time.perf_counter()
    provider = resolve_provider(gen.provider)
    resolved = _resolve_model(run.options, run.prepared.index, gen, provider, run.reporter)
    fitted_ids = [str(s.id) for s in run.prepared.train]
    warn_generator_extra_data(resolved, fitted_ids, run.options, run.reporter)
    identity = {**run.identity, "engine_hash": resolved.engine_hash, "provider": provider}
    previous = read_run_record(run.out)  # again, now that the lock is held
    replacing = check_previous_run(run.out, previous, identity, run.jobs_info, force=gen.force)
    chosen = ChosenModel(resolved, provider, identity, previous, replacing, fitted_ids)
    if gen.fidelity_filter is not None:  # the fidelity segmenter: trained once, cached beside the model
        if pair_scorer is None:
            raise ConfigError("--min-fidelity needs a pair scorer", fix="pass pair_scorer=fidelity_scorer_factory()")
        chosen.score = pair_scorer(run.prepared.train, resolved)
        chosen.checks = FilterTally(gen.fidelity_filter)
    run.timings["model_s"] = time.perf_counter() - t
    return chosen


def _start_run_record(run: LockedRun, chosen: ChosenModel) -> tuple[dict, list[dict], set[int]]:
    """5. The run record marks the folder as ours; a replaced run's files go, temporaries of a killed
    run go; returns (record, the finished pairs kept, their job indices)."""
    index, plan, resolved = run.prepared.index, run.plan, chosen.resolved
    record = {
        "tool": "lesionaug", "version": __version__, "command": "augment", "status": "running",
        "dataset": {"root": str(index.root), "layout": index.layout, "fingerprint": index.fingerprint,
                    "train_fingerprint": plan.train_fingerprint},
        "config": run.options.to_dict(), "plan_hash": plan.plan_hash, "identity": chosen.identity,
        "jobs": run.jobs_info, "provider": chosen.provider, "sampler": chosen.identity["sampler"],
        "model": resolved.record(), "generator": resolved.model_card.get("generator", "controlnet"),
        "train_ids": resolved.model_card.get("train_ids"),
        # The real pairs the plan's label sampler and shape model were fitted on (evaluate checks them too).
        "plan_fitted_ids": chosen.fitted_ids, "environment": environment_record(),
        "outputs": {"external_masks": run.output.external_masks, "layout": run.output.identity()},
        "space_estimate": run.estimate.as_dict(),
    }
    previous = chosen.previous
    if chosen.replacing and only_n_changed(previous, chosen.identity, run.jobs_info, plan):
        run.reporter.info(f"--n changed from {previous['jobs']['n']} to {plan.config.n}: keeping the pairs both "
                          "plans share")
    elif chosen.replacing:
        clear_previous_outputs(run.out, previous)
    remove_temporaries(run.out)
    write_run_record(run.out, record)
    kept = finished_entries(run.out, plan, verify_hashes=True, rewrite=True)
    return record, kept, {int(e["index"]) for e in kept}


class OriginalsLinker(threading.Thread):
    """Links (or copies) the originals into the output while the engine generates; an error is kept
    and raised in the main thread once the writes in flight have finished."""

    def __init__(self, originals: list, out: Path, how: str):
        super().__init__(name="lesionaug-originals")
        self.sources, self.out, self.how = originals, out, how
        self.placed: list[dict] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.placed.extend(link_originals(self.sources, self.out, how=self.how))
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread after the writes finish
            self.error = exc


def _generate(run: LockedRun, chosen: ChosenModel, record: dict, done: set[int]) -> Generation:
    """6-7. The engine, built for the run's shapes, once per worker's GPU; the originals linked in the
    background; what is missing generated, the writer pool encoding and writing behind the engine."""
    gen, plan, timings = run.gen, run.plan, run.timings
    t = time.perf_counter()
    engines, gen_size = _load_engines(chosen.resolved.engine_dir, chosen.provider, gen, len(plan.jobs),
                                      plan.config.size, run.reporter)
    timings["engine_load_s"] = time.perf_counter() - t
    record.update(provider=engines[0].provider, generation_size=list(gen_size), output_size=list(plan.config.size))
    size_note = resolution_note(gen_size, plan.config.size)
    if size_note:
        run.reporter.warn(size_note)
        record["size_note"] = size_note
    linker = OriginalsLinker(list(run.output.originals), run.out, gen.link)
    result = Generation(engines, gen_size, size_note, linker.placed)
    shape_model = run.prepared.shape_model

    def sample_masks(batch):
        return [sample_mask(shape_model, j.record.mask_seed, j.diagnosis, plan.config.size, j.record.mask_source)
                for j in batch]

    generators = [_batch_generator(e, gen_size, plan, gen, chosen, done) for e in engines]
    t, cpu = time.perf_counter(), time.process_time()
    linker.start()
    with run.reporter.task("generating", total=len(plan.jobs)) as task:
        task.advance(len(done))
        with ManifestAppender(run.out / MANIFEST_NAME, durable=gen.durable) as manifest, StopRequest() as stop:
            writer = PairWriter(run.out, run.output.layout, _stamp(engines[0], gen, chosen.resolved), manifest,
                                workers=gen.workers, durable=gen.durable, on_written=lambda _entry: task.advance())
            try:
                result.stats, result.per_worker = run_workers(LoopJobs(plan.jobs), done, gen.batch_size, sample_masks,
                                                              generators, writer, stop)
            except BaseException as exc:  # noqa: BLE001 - the writes in flight still finish and are recorded
                result.error = exc
            finally:
                result.tally = writer.close()
                timings["generation_wall_s"] = time.perf_counter() - t
                timings["generation_cpu_s"] = time.process_time() - cpu  # all threads: engine, masks, writers
                linker.join()
    if result.error is None and linker.error is not None:
        result.error = linker.error
    if result.error is None and result.tally.refused is not None:
        result.error = result.tally.refused  # the output cannot be written: exit 3 naming the file, not a partial run
    timings["generate_s"] = result.stats.seconds["generate"] if result.stats else 0.0
    return result


def _batch_generator(engine, gen_size: tuple[int, int], plan, gen, chosen: ChosenModel, done: set[int]):
    """One worker's ``(batch, masks) -> images``: control masks at the engine's size, images back at
    the pairs' size; under --min-fidelity each pair is scored and retried with seeds of its own."""
    settings = gen.sampler_settings()

    def generate_images(batch, masks, seeds):
        control = [control_mask(m, gen_size) for m in masks]
        if isinstance(engine, GanEngine):  # Pix2PixHD: label map -> image, no sampler
            images = engine.generate_from_labels([j.record.labels for j in batch], control)
        else:
            images = generate(engine, [j.record.prompt for j in batch], control, seeds, settings)
        return [output_image(img, plan.config.size) for img in images]

    if chosen.checks is not None:
        return filtered_generator(generate_images, chosen.score, gen.fidelity_filter, plan.config.seed, done,
                                  chosen.checks)
    return lambda batch, masks: generate_images(batch, masks, [j.record.noise_seed for j in batch])


def _stamp(engine, gen, resolved) -> GenerationStamp:
    """What every manifest line records of the generator; a GAN has no scheduler, steps, guidance or
    control scale (null in the manifest)."""
    if isinstance(engine, GanEngine):
        return GenerationStamp(None, None, None, None, resolved.model_hash, resolved.engine_hash)
    settings = gen.sampler_settings()
    return GenerationStamp(settings.scheduler, settings.steps, settings.guidance, settings.control_scale,
                           resolved.model_hash, resolved.engine_hash)


def _generation_record(run: LockedRun, chosen: ChosenModel, generation: Generation) -> dict:
    """What each engine did (a CUDA graph fallback is noted on its first run) and each worker's share."""
    fields: dict[str, Any] = {"engines": [e.describe() for e in generation.engines]}
    if chosen.checks is not None:
        fields["fidelity_filter"] = chosen.checks.to_dict()
    fields["workers"] = [{"device": d, "batches": w.batches}
                         for d, w in zip(run.gen.worker_devices, generation.per_worker)]
    return fields


def _result(run: LockedRun, chosen: ChosenModel, generation: Generation, done: set[int]) -> dict:
    """``augment``'s result (its ``--json`` data)."""
    plan, tally, resolved = run.plan, generation.tally, chosen.resolved
    wall = run.timings["generation_wall_s"]
    result = {
        "out": str(run.out), "manifest": str(run.out / MANIFEST_NAME), "n_generated": tally.written,
        "n_skipped_existing": len(done), "n_failed": len(tally.failed), "plan_hash": plan.plan_hash,
        "n_jobs": len(plan.jobs), "shard": plan.shard.describe() if plan.shard else None,
        "provider": generation.engines[0].provider, "engine": str(resolved.engine_dir), "model_source": resolved.source,
        "generation_size": list(generation.gen_size), "output_size": list(plan.config.size),
        "size_note": generation.size_note,
        "images_per_second": round(tally.written / wall, 3) if tally.written else None,
        **training_skipped(run.prepared.index), "link": run.gen.link,
    }
    if chosen.checks is not None:
        result["fidelity_filter"] = chosen.checks.to_dict()
    if run.output.external_masks:
        result["read_with"] = f"--masks {run.out / run.output.external_masks}"
    return result


def _stop_if_incomplete(run: LockedRun, record: dict, counts: dict, generation: Generation, result: dict,
                        done: set[int]) -> None:
    """A run that stopped early, failed or could not write every pair: the record says incomplete,
    then the matching one-line error (the folder resumes with the same command)."""
    stats, tally, error = generation.stats, generation.tally, generation.error
    stopped_early = stats is not None and stats.stopped_early
    if error is None and not stopped_early and not tally.failed:
        return
    n_jobs = len(run.plan.jobs)
    run.timings["total_s"] = time.perf_counter() - run.t0
    write_run_record(run.out, {**record, "status": "incomplete", "counts": counts, "timings": _round(run.timings)})
    if isinstance(error, KeyboardInterrupt) or stopped_early:
        raise Interrupted(
            f"interrupted after {len(done) + tally.written} of {n_jobs} pairs; the output is resumable",
            path=run.out,
            fix="rerun the same command to resume (finished pairs are kept)",
        ) from None
    if error is not None:
        raise error
    first = tally.failed[0]
    raise PartialFailure(
        f"{len(tally.failed)} of {n_jobs} pairs could not be written (first: {first[0]}: {first[1]})",
        path=run.out, fix="fix the cause and rerun the same command: only the missing pairs are generated",
        data=result,
    )


def _load_engines(engine_dir, provider: str, gen, n_jobs: int, size: tuple[int, int], reporter: Reporter):
    """(one engine per worker's device, the generation size), TensorRT told every shape the run uses."""
    settings = gen.sampler_settings()
    card = EngineCard.read(engine_dir)
    gen_size = generation_size(size, card.model.get("resolution"), card.size_multiple)
    per_job = 2 if settings.classifier_free_guidance else 1
    profile = ShapeProfile.for_run(max(1, n_jobs), gen.batch_size, gen_size[1], gen_size[0],
                                   per_call=card.max_batch // per_job)
    engines = load_engines(engine_dir, provider, gen.worker_devices, profile=profile,
                           guided=settings.classifier_free_guidance, tensorrt=gen.tensorrt_settings(),
                           reporter=reporter)
    return engines, gen_size


def _round(timings: dict) -> dict:
    return {k: round(v, 3) for k, v in timings.items()}
