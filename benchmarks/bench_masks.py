"""Mask sampling speed on one core: masks per second at 512x512, shape model vs real vs ellipses.

Fits the shape model on a demo dataset's training masks (isic2018 layout, 200 pairs at 128 px),
pins the process to one CPU with one BLAS/OpenMP thread, then times ``sample_mask`` for the
``model`` and ``real`` sources and the random-ellipse baseline. Mask k uses seed
``mask_seed(0, k)``, as in a plan. Prints a table and writes benchmarks/results/masks.json.

    python benchmarks/bench_masks.py             # 1000 masks per source (200 for real)
    python benchmarks/bench_masks.py --n 3000 --size 1024
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from lesionaug.dataset.index import load_dataset  # noqa: E402
from lesionaug.demo.write import write_demo_dataset
from lesionaug.masks.realism import sample_ellipse_mask  # noqa: E402
from lesionaug.masks.sampling import mask_seed, sample_mask
from lesionaug.masks.training_masks import fit_dataset_shape_model, mask_fitting_samples  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "masks.json"
TARGET_PER_S = 200.0


def pin_to_one_core() -> int | None:
    """Run on the first CPU this process may use (Linux); the CPU number, or None elsewhere."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def time_source(make, n: int, repeats: int) -> dict:
    """Masks per second over ``repeats`` runs of ``n`` masks (median and best), plus a checksum."""
    rates, checksum = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        total = 0
        for k in range(n):
            total += int(make(k).sum())
        rates.append(n / (time.perf_counter() - start))
        checksum = total
    return {
        "n": n,
        "repeats": repeats,
        "masks_per_s_median": round(statistics.median(rates), 1),
        "masks_per_s_best": round(max(rates), 1),
        "mean_area_pixels": round(checksum / n, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="masks per timed run (model and ellipse)")
    parser.add_argument("--n-real", type=int, default=200, help="masks per timed run (real source)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cpu = pin_to_one_core()
    size = (args.size, args.size)

    with tempfile.TemporaryDirectory() as tmp:
        data = write_demo_dataset(Path(tmp) / "demo", n=200, layout="isic2018", size=128, seed=0)
        index = load_dataset(data, labels=[Path(data) / "isic_archive_metadata.csv"])  # the Task 1 diagnoses
        train = mask_fitting_samples(index)
        start = time.perf_counter()
        model = fit_dataset_shape_model(index, train)
        fit_s = time.perf_counter() - start
    diagnoses = [s.labels.diagnosis for s in train]

    def model_mask(k: int) -> np.ndarray:
        return sample_mask(model, mask_seed(0, k), diagnoses[k % len(diagnoses)], size, "model")

    def real_mask(k: int) -> np.ndarray:
        return sample_mask(model, mask_seed(0, k), diagnoses[k % len(diagnoses)], size, "real")

    def ellipse_mask(k: int) -> np.ndarray:
        return sample_ellipse_mask(mask_seed(0, k), size, model.area_range)

    for warm in (model_mask, real_mask, ellipse_mask):  # first calls import scipy parts
        warm(0)
    results = {
        "model": time_source(model_mask, args.n, args.repeats),
        "real": time_source(real_mask, args.n_real, args.repeats),
        "ellipse": time_source(ellipse_mask, args.n, args.repeats),
    }
    report = {
        "benchmark": "masks",
        "what": "sample_mask masks per second on one pinned core, one thread; fit on 120 demo training masks",
        "size": list(size),
        "fit_s": round(fit_s, 3),
        "training_masks": len(train),
        "shape_groups": sorted(model.groups),
        "target_masks_per_s": TARGET_PER_S,
        "model_meets_target": results["model"]["masks_per_s_median"] >= TARGET_PER_S,
        "pinned_cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"mask sampling at {size[0]}x{size[1]}, one core (fit: {fit_s:.2f} s on {len(train)} masks)")
    print(f"{'source':<10}{'masks/s (median)':>18}{'best':>10}{'n':>8}")
    for name, r in results.items():
        print(f"{name:<10}{r['masks_per_s_median']:>18.1f}{r['masks_per_s_best']:>10.1f}{r['n']:>8}")
    print(f"target {TARGET_PER_S:.0f} masks/s for the model source: {'met' if report['model_meets_target'] else 'NOT met'}")
    print(f"wrote {RESULTS}")
    if not report["model_meets_target"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
