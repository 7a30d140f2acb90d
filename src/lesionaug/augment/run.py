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
from dataclasses import asdict
from pathlib import Path

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
        return _run_locked(options, prepared, out, output, identity, jobs_info, estimate, timings, t0, reporter,
                           pair_scorer)
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


def _run_locked(options, prepared, out, output, identity, jobs_info, estimate, timings, t0, reporter,
                pair_scorer=None) -> dict:
    gen = options.generation
    index, plan = prepared.index, prepared.plan
    t = time.perf_counter()
    provider = resolve_provider(gen.provider)
    resolved = _resolve_model(options, index, gen, provider, reporter)
    fitted_ids = [str(s.id) for s in prepared.train]
    warn_generator_extra_data(resolved, fitted_ids, options, reporter)
    identity = {**identity, "engine_hash": resolved.engine_hash, "provider": provider}
    previous = read_run_record(out)  # again, now that the lock is held
    replacing = check_previous_run(out, previous, identity, jobs_info, force=gen.force)
    checks, score = None, None
    if gen.fidelity_filter is not None:  # the fidelity segmenter: trained once, cached beside the model
        if pair_scorer is None:
            raise ConfigError("--min-fidelity needs a pair scorer", fix="pass pair_scorer=fidelity_scorer_factory()")
        score = pair_scorer(prepared.train, resolved)
        checks = FilterTally(gen.fidelity_filter)
    timings["model_s"] = time.perf_counter() - t

    # 5. The run record marks the folder as ours; a replaced run's files go; temporaries of a killed run go.
    record = {
        "tool": "lesionaug", "version": __version__, "command": "augment", "status": "running",
        "dataset": {"root": str(index.root), "layout": index.layout, "fingerprint": index.fingerprint,
                    "train_fingerprint": plan.train_fingerprint},
        "config": options.to_dict(), "plan_hash": plan.plan_hash, "identity": identity, "jobs": jobs_info,
        "provider": provider, "sampler": identity["sampler"], "model": resolved.record(),
        "generator": resolved.model_card.get("generator", "controlnet"),
        "train_ids": resolved.model_card.get("train_ids"),
        # The real pairs the plan's label sampler and shape model were fitted on (evaluate checks them too).
        "plan_fitted_ids": fitted_ids, "environment": environment_record(),
        "outputs": {"external_masks": output.external_masks, "layout": output.identity()},
        "space_estimate": estimate.as_dict(),
    }
    if replacing and only_n_changed(previous, identity, jobs_info, plan):
        reporter.info(f"--n changed from {previous['jobs']['n']} to {plan.config.n}: keeping the pairs both plans share")
    elif replacing:
        clear_previous_outputs(out, previous)
    remove_temporaries(out)
    write_run_record(out, record)
    kept = finished_entries(out, plan, verify_hashes=True, rewrite=True)
    done = {int(e["index"]) for e in kept}

    # 6. The engine, built for the run's shapes, once per worker's GPU; the originals are linked in
    # the background while it generates.
    t = time.perf_counter()
    settings = gen.sampler_settings()
    engines, gen_size = _load_engines(resolved.engine_dir, provider, gen, len(plan.jobs), plan.config.size, reporter)
    engine = engines[0]
    timings["engine_load_s"] = time.perf_counter() - t
    originals: list[dict] = []
    link_errors: list[BaseException] = []

    def link_all() -> None:
        try:
            originals.extend(link_originals(list(output.originals), out, how=gen.link))
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread after the writes finish
            link_errors.append(exc)

    linking = threading.Thread(target=link_all, name="lesionaug-originals")
    record.update(provider=engine.provider, generation_size=list(gen_size), output_size=list(plan.config.size))
    size_note = resolution_note(gen_size, plan.config.size)
    if size_note:
        reporter.warn(size_note)
        record["size_note"] = size_note
    shape_model = prepared.shape_model

    def sample_masks(batch):
        return [sample_mask(shape_model, j.record.mask_seed, j.diagnosis, plan.config.size, j.record.mask_source)
                for j in batch]

    def batch_generator(worker_engine):
        def generate_images(batch, masks, seeds):
            control = [control_mask(m, gen_size) for m in masks]
            if isinstance(worker_engine, GanEngine):  # Pix2PixHD: label map -> image, no sampler
                images = worker_engine.generate_from_labels([j.record.labels for j in batch], control)
            else:
                images = generate(worker_engine, [j.record.prompt for j in batch], control, seeds, settings)
            return [output_image(img, plan.config.size) for img in images]

        if checks is not None:  # --min-fidelity: each pair scored, retried with seeds of its own
            return filtered_generator(generate_images, score, gen.fidelity_filter, plan.config.seed, done, checks)
        return lambda batch, masks: generate_images(batch, masks, [j.record.noise_seed for j in batch])

    # 7. Generate what is missing; the writer pool encodes and writes behind the engine.
    if isinstance(engine, GanEngine):  # no scheduler, steps, guidance or control scale: null in the manifest
        stamp = GenerationStamp(None, None, None, None, resolved.model_hash, resolved.engine_hash)
    else:
        stamp = GenerationStamp(settings.scheduler, settings.steps, settings.guidance, settings.control_scale,
                                resolved.model_hash, resolved.engine_hash)
    stats, tally, error, per_worker = None, None, None, []
    t, cpu = time.perf_counter(), time.process_time()
    linking.start()
    with reporter.task("generating", total=len(plan.jobs)) as task:
        task.advance(len(done))
        with ManifestAppender(out / MANIFEST_NAME, durable=gen.durable) as manifest, StopRequest() as stop:
            writer = PairWriter(out, output.layout, stamp, manifest, workers=gen.workers, durable=gen.durable,
                                on_written=lambda _entry: task.advance())
            try:
                stats, per_worker = run_workers(LoopJobs(plan.jobs), done, gen.batch_size, sample_masks,
                                                [batch_generator(e) for e in engines], writer, stop)
            except BaseException as exc:  # noqa: BLE001 - the writes in flight still finish and are recorded
                error = exc
            finally:
                tally = writer.close()
                timings["generation_wall_s"] = time.perf_counter() - t
                timings["generation_cpu_s"] = time.process_time() - cpu  # all threads: engine, masks, writers
                linking.join()
    if error is None and link_errors:
        error = link_errors[0]
    if error is None and tally.refused is not None:
        error = tally.refused  # the output cannot be written: exit 3 naming the file, not a partial run
    timings["generate_s"] = stats.seconds["generate"] if stats else 0.0
    # What each engine did (a CUDA graph fallback is noted on its first run) and each worker's share.
    record["engines"] = [e.describe() for e in engines]
    if checks is not None:
        record["fidelity_filter"] = checks.to_dict()
    record["workers"] = [{"device": d, "batches": w.batches} for d, w in zip(gen.worker_devices, per_worker)]
    n_written = tally.written
    counts = {"n_jobs": len(plan.jobs), "n_generated": n_written, "n_skipped_existing": len(done),
              "n_failed": len(tally.failed)}
    result = {
        "out": str(out), "manifest": str(out / MANIFEST_NAME), "n_generated": n_written,
        "n_skipped_existing": len(done), "n_failed": len(tally.failed), "plan_hash": plan.plan_hash,
        "n_jobs": len(plan.jobs), "shard": plan.shard.describe() if plan.shard else None,
        "provider": engine.provider, "engine": str(resolved.engine_dir), "model_source": resolved.source,
        "generation_size": list(gen_size), "output_size": list(plan.config.size), "size_note": size_note,
        "images_per_second": round(n_written / timings["generation_wall_s"], 3) if n_written else None,
        **training_skipped(index), "link": gen.link,
    }
    if checks is not None:
        result["fidelity_filter"] = checks.to_dict()
    if output.external_masks:
        result["read_with"] = f"--masks {out / output.external_masks}"
    stopped = error is not None or (stats is not None and stats.stopped_early) or tally.failed
    if stopped:
        timings["total_s"] = time.perf_counter() - t0
        write_run_record(out, {**record, "status": "incomplete", "counts": counts, "timings": _round(timings)})
        if isinstance(error, KeyboardInterrupt) or (stats is not None and stats.stopped_early):
            raise Interrupted(
                f"interrupted after {len(done) + n_written} of {len(plan.jobs)} pairs; the output is resumable",
                path=out,
                fix="rerun the same command to resume (finished pairs are kept)",
            ) from None
        if error is not None:
            raise error
        first = tally.failed[0]
        raise PartialFailure(
            f"{len(tally.failed)} of {len(plan.jobs)} pairs could not be written (first: {first[0]}: {first[1]})",
            path=out, fix="fix the cause and rerun the same command: only the missing pairs are generated",
            data=result,
        )

    # 8. Label files, the manifest in job order, the record marked complete.
    t = time.perf_counter()
    entries = kept + tally.entries
    record["outputs"] = {**record["outputs"], "originals": sorted(originals, key=lambda o: o["path"])}
    timings["total_s"] = time.perf_counter() - t0  # the record's total leaves out writing the record
    finish_output(out, {**record, "counts": counts, "timings": _round(timings)}, list(output.label_targets), entries)
    timings["finish_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    result["timings"] = _round(timings)
    return result


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
