"""Both generators on the same data and machine: training time, export time, generation speed.

The diffusion generator (the compact model, ``--model-size small``: text-to-image base then
ControlNet, 64 px) and the Pix2PixHD baseline (``--generator pix2pixhd``, compact size, 128 px), each
trained for ``--steps`` steps per stage on the same demo dataset through the command line, exported
to ONNX, and generating ``--n`` pairs at 128 px with ``lesionaug augment`` (the diffusion engine with
``--sampler-steps`` denoising steps, as ``make demo`` does; Pix2PixHD in one forward pass). Seconds
per training step are measured on the short run; the time of each generator's default CPU budget
(600 + 500 steps small; 200 Pix2PixHD steps) is extrapolated from them. The runs are sequential
on one machine, so both see the same cores (and whatever else loads them: ``load_average`` is
recorded before and after).

    python benchmarks/bench_generators.py                 # writes benchmarks/results/generators.json
    python benchmarks/bench_generators.py --steps 5 --n 8 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_BUDGET_STEPS = {"controlnet": 600 + 500, "pix2pixhd": 200}  # the CPU defaults (small; compact)


def cli(*args: str, cache: Path) -> tuple[dict, float]:
    """Run ``lesionaug ARGS --json``; (its data, wall seconds)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LESIONAUG_CACHE": str(cache)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lesionaug", *args, "--json", "--quiet"], capture_output=True,
                          text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"lesionaug {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)["data"], seconds


def training_rate(data: dict, batch_size: int = 4) -> dict:
    """Seconds per optimizer step of the training loop (``samples_per_second`` leaves out checkpoints
    and sample grids), averaged over the stages by their steps."""
    stages = data["stages"]
    if data.get("generator") == "pix2pixhd":  # one loop trains G and D: its two rows share the seconds
        stages = stages[:1]
    steps = sum(s["steps_run"] for s in stages)
    loop = sum(s["steps_run"] * batch_size / s["samples_per_second"] for s in stages if s["samples_per_second"])
    return {"steps": steps, "loop_seconds": round(loop, 2), "seconds_per_step": round(loop / steps, 4),
            "stage_seconds_with_checkpoints": round(sum(s["seconds"] for s in stages), 2)}


def bench(kind: str, dataset: Path, work: Path, args) -> dict:
    cache = work / "cache"
    model, engine, out = work / f"{kind}-model", work / f"{kind}-engine", work / f"{kind}-augmented"
    if kind == "controlnet":
        train_args = ["--model-size", "small", "--train-steps", str(args.steps), "--base-steps", str(args.steps)]
        sampler = ["--denoise-steps", str(args.sampler_steps)]
    else:
        train_args = ["--generator", "pix2pixhd", "--train-steps", str(args.steps)]
        sampler = []
    trained, train_wall = cli("train", str(dataset), "--out", str(model), *train_args, cache=cache)
    rate = training_rate(trained)
    _, export_wall = cli("export", str(model), "--out", str(engine), cache=cache)
    generated, augment_wall = cli("augment", str(dataset), "--model", str(engine), "--n", str(args.n), "--size",
                                  str(args.size), "--out", str(out), "--provider", "cpu", *sampler, cache=cache)
    return {
        "generator": kind,
        "training_resolution": trained["resolution"],
        "train": {**rate, "wall_seconds": round(train_wall, 2), "batch_size": 4,
                  "default_budget_steps": DEFAULT_BUDGET_STEPS[kind],
                  "default_budget_seconds_estimate": round(rate["seconds_per_step"] * DEFAULT_BUDGET_STEPS[kind], 1)},
        "export_wall_seconds": round(export_wall, 2),
        "generation": {"n": args.n, "size": args.size, "sampler_steps": args.sampler_steps if sampler else None,
                       "images_per_second": generated["images_per_second"],
                       "generate_seconds": generated["timings"]["generate_s"],
                       "augment_wall_seconds": round(augment_wall, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per stage of each generator")
    parser.add_argument("--n", type=int, default=32, help="pairs each generator generates")
    parser.add_argument("--size", type=int, default=128, help="pair size in px")
    parser.add_argument("--sampler-steps", type=int, default=10, help="denoising steps of the diffusion engine")
    parser.add_argument("--pairs", type=int, default=40, help="demo dataset size (60%% train)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "generators.json")
    args = parser.parse_args()

    from lesionaug.demo.write import write_demo_dataset
    from lesionaug.environment import environment_record

    with tempfile.TemporaryDirectory(prefix="lesionaug-bench-generators-") as tmp:
        work = Path(tmp)
        dataset = write_demo_dataset(work / "example", n=args.pairs, layout="isic2018", size=args.size, seed=0)
        load_before = os.getloadavg()
        rows = [bench(kind, dataset, work, args) for kind in ("controlnet", "pix2pixhd")]
        load_after = os.getloadavg()
    result = {
        "benchmark": "generators",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "environment": environment_record(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for row in rows:
        t, g = row["train"], row["generation"]
        print(f"{row['generator']:>10}: {t['seconds_per_step']:.3f} s/step at {row['training_resolution']} px "
              f"(default budget {t['default_budget_steps']} steps ~ {t['default_budget_seconds_estimate']:.0f} s), "
              f"export {row['export_wall_seconds']:.1f} s, {g['images_per_second']} images/s at {g['size']} px")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
