"""Indexing speed: seconds per 1,000 images for `load_dataset`, cold (first call) and warm (repeat calls).

Writes N tiny image/mask pairs (JPEG images, PNG masks) in three layouts to a temporary folder:
``paired`` (images/ + masks/ + labels.csv), ``isic2018`` (Task 1 folders per split + Task 3 CSV) and
``isic2018+task2`` (the same plus five Task 2 attribute masks per image, whose emptiness is read from
pixels), then times indexing. Prints a table and writes benchmarks/results/index.json.

    python benchmarks/bench_index.py            # N = 2000
    python benchmarks/bench_index.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lesionaug.dataset.index import load_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "index.json"
CODES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ATTRIBUTES = ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")


def tiny_pair(k: int, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(k)
    w, h = size
    rgb = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2 <= 1
    return Image.fromarray(rgb), Image.fromarray(mask.astype(np.uint8) * 255, "L")


def write_paired(root: Path, n: int, size: tuple[int, int]) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["image,dx"]
    for k in range(n):
        image, mask = tiny_pair(k, size)
        image.save(root / "images" / f"case_{k:06d}.jpg", quality=90)
        mask.save(root / "masks" / f"case_{k:06d}_mask.png")
        rows.append(f"case_{k:06d}.jpg,{CODES[k % 7].lower()}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def write_isic2018(root: Path, n: int, size: tuple[int, int], task2: bool) -> None:
    words = ["Training"] * 6 + ["Validation"] + ["Test"] * 3
    for word in set(words):
        (root / f"ISIC2018_Task1-2_{word}_Input").mkdir(parents=True)
        (root / f"ISIC2018_Task1_{word}_GroundTruth").mkdir()
    task2_dir = root / "ISIC2018_Task2_Training_GroundTruth_v3"
    task2_dir.mkdir()
    gt = root / "ISIC2018_Task3_Training_GroundTruth"
    gt.mkdir()
    rows = ["image," + ",".join(CODES)]
    empty = Image.new("L", size, 0)
    for k in range(n):
        word = words[k % len(words)]
        image_id = f"ISIC_{k:07d}"
        image, mask = tiny_pair(k, size)
        image.save(root / f"ISIC2018_Task1-2_{word}_Input" / f"{image_id}.jpg", quality=90)
        mask.save(root / f"ISIC2018_Task1_{word}_GroundTruth" / f"{image_id}_segmentation.png")
        if task2 and word == "Training":
            for a, attribute in enumerate(ATTRIBUTES):
                (mask if (k + a) % 3 == 0 else empty).save(task2_dir / f"{image_id}_attribute_{attribute}.png")
        rows.append(f"{image_id}," + ",".join("1.0" if j == k % 7 else "0.0" for j in range(7)))
    (gt / "ISIC2018_Task3_Training_GroundTruth.csv").write_text("\n".join(rows) + "\n")


def time_index(root: Path, repeats: int) -> tuple[float, list[float], int]:
    start = time.perf_counter()
    idx = load_dataset(root)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_dataset(root)
        warm.append(time.perf_counter() - start)
    return cold, warm, len(idx.usable())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="image/mask pairs per layout")
    parser.add_argument("--size", type=int, nargs=2, default=(32, 24), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=3, help="warm runs (the median is reported)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    size = tuple(args.size)
    results = {}
    with tempfile.TemporaryDirectory(prefix="lesionaug-bench-") as tmp:
        layouts = {
            "paired": lambda root: write_paired(root, args.n, size),
            "isic2018": lambda root: write_isic2018(root, args.n, size, task2=False),
            "isic2018+task2": lambda root: write_isic2018(root, args.n, size, task2=True),
        }
        for name, write in layouts.items():
            root = Path(tmp) / name
            start = time.perf_counter()
            write(root)
            written = time.perf_counter() - start
            cold, warm, usable = time_index(root, args.repeats)
            assert usable == args.n, f"{name}: {usable} usable of {args.n}"
            warm_median = statistics.median(warm)
            results[name] = {
                "n": args.n,
                "write_s": round(written, 3),
                "cold_s": round(cold, 3),
                "warm_s": round(warm_median, 3),
                "cold_per_1000_s": round(cold / args.n * 1000, 4),
                "warm_per_1000_s": round(warm_median / args.n * 1000, 4),
            }
            print(
                f"{name:16s} n={args.n:6d}  cold {cold:7.3f} s  warm {warm_median:7.3f} s  "
                f"per 1000: cold {results[name]['cold_per_1000_s']:.3f} s, warm {results[name]['warm_per_1000_s']:.3f} s"
            )
    report = {
        "benchmark": "index",
        "what": "load_dataset wall time; cold = first call in the process, warm = median of repeats",
        "image_size": list(size),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
