"""End-to-end `augment` throughput against generation alone, in one run, same engine and jobs.

Generation alone: ``sampler.generate`` over the plan's jobs in the same batches, masks sampled
beforehand, nothing written. End to end: ``run_augment`` on the same dataset, plan and engine,
its generation phase timed from the first batch until the writer pool has written (encoded,
hashed, fsynced, renamed) and recorded the last pair. Target: end-to-end images/s at least 0.95
of generation alone, i.e. writing costs the loop almost nothing because it overlaps generation.

The engine is the compact model `augment` trains on a CPU by default ("small", 128 px), trained a
single step per stage (speed does not depend on the weights) and exported fp32, unless --engine
names one. Generation alone runs before, between and after the end-to-end runs (``--repeats``);
the ratio is the median over end-to-end runs of (mean of the two generation-alone runs beside it)
/ (its time), which cancels most of the drift of a shared machine's load; the ratio of the means
and of CPU time are reported too, and ``end_to_end_engine_share`` is the part of the end-to-end
loop's wall time spent in the engine.

    python benchmarks/bench_augment.py                       # writes benchmarks/results/augment.json
    python benchmarks/bench_augment.py --n 8 --steps 4       # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def build_engine(dataset: Path, folder: Path, model_size: str) -> Path:
    from lesionaug.dataset.index import load_dataset
    from lesionaug.export.run import export_model
    from lesionaug.train.config import TrainConfig
    from lesionaug.train.run import train_model

    config = TrainConfig(model_size=model_size, steps=1, base_steps=1, batch_size=2, num_samples=1, sample_steps=1)
    train_model(load_dataset(dataset, labels=[Path(dataset) / "isic_archive_metadata.csv"]), folder / "model", config)
    export_model(folder / "model", folder / "engine", "fp32", True)
    return folder / "engine"


def options_for(dataset: Path, out: Path, engine: Path, args) -> object:
    from lesionaug.augment.generation_options import GenerationOptions
    from lesionaug.augment.options import augment_options

    generation = GenerationOptions(
        out=out, model=engine, provider="cpu", steps=args.steps, guidance=args.guidance,
        batch_size=args.batch_size, image_format=args.image_format, synthetic_only=True,
    )
    return augment_options(dataset, args.n, seed=1, size=str(args.size), generation=generation)


def generation_alone(options, engine_dir: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds spent in ``generate`` for the plan's jobs, batch by batch as augment cuts them.

    A freshly loaded engine, like the one ``run_augment`` loads: both sides pay ONNX Runtime's
    first-run cost in their first batch.
    """
    from lesionaug.augment.loop import fixed_batches
    from lesionaug.augment.preparation import prepare_plan
    from lesionaug.augment.run import control_mask, generation_size, output_image
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import generate
    from lesionaug.masks.sampling import sample_mask

    prepared = prepare_plan(options)
    plan, model = prepared.plan, prepared.shape_model
    engine = Engine.load(engine_dir, "cpu")
    gen_size = generation_size(plan.config.size, engine.card.model.get("resolution"), engine.card.size_multiple)
    settings = options.generation.sampler_settings()
    batches = fixed_batches(list(plan.jobs), options.generation.batch_size)
    masks = [[control_mask(sample_mask(model, j.mask_seed, j.diagnosis, plan.config.size, j.mask_source), gen_size)
              for j in batch] for batch in batches]
    seconds = cpu = 0.0
    for batch, batch_masks in zip(batches, masks):
        start, start_cpu = time.perf_counter(), time.process_time()
        images = generate(engine, [j.prompt for j in batch], batch_masks, [j.noise_seed for j in batch], settings)
        [output_image(img, plan.config.size) for img in images]
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    return seconds, cpu, len(plan.jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", type=Path, help="an engine folder (default: build the compact one)")
    parser.add_argument("--model-size", default="small", choices=("tiny", "small", "base"))
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-format", default="png", choices=("png", "jpg"))
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs, each between two generation-alone runs")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "augment.json")
    args = parser.parse_args()

    from lesionaug.augment.run import run_augment
    from lesionaug.demo.write import write_demo_dataset

    with tempfile.TemporaryDirectory(prefix="lesionaug-bench-augment-") as tmp:
        tmp = Path(tmp)
        os.environ["LESIONAUG_CACHE"] = str(tmp / "cache")  # never touch the user's cache
        dataset = write_demo_dataset(tmp / "isic", n=40, layout="isic2018", size=args.size, seed=0)
        start = time.perf_counter()
        engine = args.engine or build_engine(dataset, tmp, args.model_size)
        build_s = time.perf_counter() - start

        # Alternate: alone, end to end, alone, ... so drifting machine load hits both sides alike.
        alone_runs, alone_cpu, e2e_runs = [], [], []
        for r in range(args.repeats):
            seconds, cpu, n = generation_alone(options_for(dataset, tmp / "unused", engine, args), engine)
            alone_runs.append(seconds)
            alone_cpu.append(cpu)
            result = run_augment(options_for(dataset, tmp / f"out-{r}", engine, args))
            e2e_runs.append(result["timings"])
        seconds, cpu, _ = generation_alone(options_for(dataset, tmp / "unused", engine, args), engine)
        alone_runs.append(seconds)
        alone_cpu.append(cpu)

    # Each end-to-end run against the mean of the two generation-alone runs beside it in time, and the
    # median of those ratios: the machine's load drifts (other programs share it), the pairs less so.
    walls = [t["generation_wall_s"] for t in e2e_runs]
    paired = [((alone_runs[i] + alone_runs[i + 1]) / 2) / walls[i] for i in range(len(walls))]
    ratio = statistics.median(paired)
    in_engine = sum(t["generate_s"] for t in e2e_runs) / sum(walls)
    timings = e2e_runs[paired.index(sorted(paired)[len(paired) // 2])]
    alone_ips = n / statistics.median(alone_runs)
    e2e_ips = n / statistics.median(walls)
    mean_ratio = (sum(alone_runs) / len(alone_runs)) / (sum(walls) / len(walls))
    # CPU seconds of the whole process (engine, mask sampling and writer threads): other programs
    # on the machine slow the wall clock, not this, so it shows the writers' true cost on a busy box.
    e2e_cpu = [t["generation_cpu_s"] for t in e2e_runs]
    cpu_ratio = (sum(alone_cpu) / len(alone_cpu)) / (sum(e2e_cpu) / len(e2e_cpu))
    report = {
        "benchmark": "augment end to end vs generation alone",
        "engine": str(args.engine) if args.engine else f"compact {args.model_size} (1 training step a stage), fp32",
        "provider": result["provider"],
        "n": n, "size": args.size, "steps": args.steps, "guidance": args.guidance, "batch_size": args.batch_size,
        "image_format": args.image_format,
        "generation_alone_images_per_s": round(alone_ips, 4),
        "generation_alone_seconds": [round(x, 3) for x in alone_runs],
        "end_to_end_images_per_s": round(e2e_ips, 4),
        "end_to_end_generation_wall_seconds": [round(t["generation_wall_s"], 3) for t in e2e_runs],
        # Within the end-to-end runs: time in the engine over the loop's wall time (1.0 = writing,
        # mask sampling and the final drain of the writer cost the loop nothing).
        "end_to_end_engine_share": round(in_engine, 4),
        "ratio": round(ratio, 4),
        "paired_ratios": [round(r, 4) for r in paired],
        "ratio_of_means": round(mean_ratio, 4),
        "generation_alone_cpu_seconds": [round(x, 3) for x in alone_cpu],
        "end_to_end_generation_cpu_seconds": [round(x, 3) for x in e2e_cpu],
        "ratio_cpu_time": round(cpu_ratio, 4),
        "target_ratio": 0.95,
        "meets_target": ratio >= 0.95,
        "end_to_end_timings_s": timings,
        "engine_build_s": round(build_s, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"generation alone {alone_ips:.3f} images/s, end to end {e2e_ips:.3f} images/s, "
          f"ratio {ratio:.3f} (target >= 0.95; of means {mean_ratio:.3f}, "
          f"of CPU time {cpu_ratio:.3f}) -> {args.out}")


if __name__ == "__main__":
    main()
