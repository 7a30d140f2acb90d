"""Cost of the evaluation pieces on one CPU thread: segmenter training steps, prediction, metrics, SSIM.

Segmenters (each MONAI architecture, default widths 16..256, batch 8) are timed per training step
and per predicted image at 64 and 128 px on demo images; the ISIC metrics and SSIM per 512x512 pair.
These numbers size ``lesionaug evaluate``: a run costs about (real + synthetic pairs) / batch x
epochs x repeats x counts training steps. Prints a table and writes
benchmarks/results/evaluation.json.

    python benchmarks/bench_evaluation.py            # 20 timed steps per configuration
    python benchmarks/bench_evaluation.py --steps 50
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation.json"


def time_training(arch: str, size: int, images: np.ndarray, masks: np.ndarray, steps: int) -> dict:
    """Seconds per training step (after 3 warm-up steps) and per predicted image."""
    from lesionaug.evaluate.segmenter import SegmenterConfig, train_segmenter

    batch = 8
    n = batch * steps
    reps = np.resize(np.arange(len(images)), n)
    x, y = images[reps], masks[reps]
    warm = SegmenterConfig(arch=arch, image_size=size, epochs=1, batch_size=batch, device="cpu")
    train_segmenter((x[: 3 * batch], y[: 3 * batch]), warm)
    start = time.perf_counter()
    segmenter = train_segmenter((x, y), warm)
    per_step = (time.perf_counter() - start) / steps
    inputs = list(images[:32].transpose(0, 2, 3, 1))
    start = time.perf_counter()
    segmenter.predict(inputs)
    per_image = (time.perf_counter() - start) / len(inputs)
    parameters = sum(p.numel() for p in segmenter.network.parameters())
    return {"arch": arch, "size": size, "batch": batch, "ms_per_step": round(per_step * 1000, 1),
            "ms_per_predicted_image": round(per_image * 1000, 2), "parameters": parameters}


def time_metrics(repeats: int = 50) -> dict:
    from lesionaug.evaluate.metrics import score_masks, structural_similarity

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    truth = (yy - 250) ** 2 + (xx - 260) ** 2 < 150**2
    pred = (yy - 240) ** 2 + (xx - 270) ** 2 < 140**2
    a = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    start = time.perf_counter()
    for _ in range(repeats):
        score_masks(truth, pred)
    metrics = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(max(1, repeats // 5)):
        structural_similarity(a, b)
    ssim = (time.perf_counter() - start) / max(1, repeats // 5)
    return {"ms_per_512_mask_pair_all_metrics": round(metrics * 1000, 2), "ms_per_512_rgb_ssim": round(ssim * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from lesionaug.dataset.index import load_dataset
    from lesionaug.demo.write import write_demo_dataset
    from lesionaug.evaluate.segmenter import load_pairs

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_demo_dataset(Path(tmp) / "demo", n=64, layout="isic2018", size=128, seed=0)
        pairs = [(s.image, s.mask) for s in load_dataset(root).usable()]
        for size in (64, 128):
            images, masks = load_pairs(pairs, size)
            for arch in ("unet", "basicunet", "attentionunet"):
                row = time_training(arch, size, images, masks, args.steps)
                rows.append(row)
                print(f"{arch:14s} {size:4d} px  {row['ms_per_step']:8.1f} ms/step  "
                      f"{row['ms_per_predicted_image']:7.2f} ms/image  {row['parameters']:,} parameters")
    metrics = time_metrics()
    print(f"metrics on a 512x512 mask pair: {metrics['ms_per_512_mask_pair_all_metrics']} ms; "
          f"SSIM of a 512x512 RGB pair: {metrics['ms_per_512_rgb_ssim']} ms")
    result = {
        "benchmark": "evaluation",
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "threads": 1},
        "segmenters": rows,
        "metrics": metrics,
        "median_ms_per_step_64px": statistics.median(r["ms_per_step"] for r in rows if r["size"] == 64),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
