"""The report's figures, drawn with matplotlib's Agg canvas (no display, no global backend switch).

Each function returns PNG bytes; ``report.write_report`` writes them atomically beside the report.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

DPI = 110


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def dice_vs_synthetic(results: Sequence[dict], runs: Sequence[dict], title: str) -> bytes:
    """Test Dice against the number of synthetic pairs: each run as a dot, the mean over seeds, and
    the band real-only mean + the paired gain's 95% interval (``delta_ci95``: test images and seeds)."""
    figure = _figure(5.6, 3.8)
    ax = figure.add_subplot()
    counts = [r["synthetic_count"] for r in results]
    base = next(r["dice_mean"] for r in results if r["synthetic_count"] == 0)
    low = [base + (r["delta_ci95"][0] if r.get("delta_ci95") else r["delta_vs_real"]) for r in results]
    high = [base + (r["delta_ci95"][1] if r.get("delta_ci95") else r["delta_vs_real"]) for r in results]
    ax.fill_between(counts, low, high, color="tab:blue", alpha=0.18, linewidth=0,
                    label="real-only mean + paired gain, 95% CI (images, seeds)")
    ax.plot(counts, [r["dice_mean"] for r in results], "o-", color="tab:blue", label="mean over seeds")
    ax.axhline(base, color="tab:gray", linestyle=":", linewidth=1)
    ax.scatter(
        [run["synthetic_count"] for run in runs],
        [run["dice"] for run in runs],
        s=12,
        color="tab:gray",
        alpha=0.6,
        label="one segmenter",
        zorder=3,
    )
    ax.set_xlabel("synthetic pairs added to the real training set")
    ax.set_ylabel("Dice on the real test split")
    ax.set_xticks(counts)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _png(figure)


def dice_by_generator(results: dict[str, Sequence[dict]], baseline: Sequence[dict], title: str) -> bytes:
    """Dice against the synthetic count, one line per generator with its band (real-only mean + the
    paired gain's 95% interval), the shared real-only segmenters as grey dots at 0."""
    figure = _figure(6.0, 3.9)
    ax = figure.add_subplot()
    for k, (name, rows) in enumerate(results.items()):
        colour = f"C{k}"
        counts = [r["synthetic_count"] for r in rows]
        base = next(r["dice_mean"] for r in rows if r["synthetic_count"] == 0)
        low = [base + (r["delta_ci95"][0] if r.get("delta_ci95") else r["delta_vs_real"]) for r in rows]
        high = [base + (r["delta_ci95"][1] if r.get("delta_ci95") else r["delta_vs_real"]) for r in rows]
        ax.fill_between(counts, low, high, color=colour, alpha=0.15, linewidth=0)
        ax.plot(counts, [r["dice_mean"] for r in rows], "o-", color=colour, label=f"{name} (band: 95% CI of the gain)")
    ax.scatter([0] * len(baseline), [run["dice"] for run in baseline], s=12, color="tab:gray", alpha=0.6,
               label="real-only segmenters", zorder=3)
    ax.set_xlabel("synthetic pairs added to the real training set")
    ax.set_ylabel("Dice on the real test split")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _png(figure)


def quality_by_generator(quality: dict[str, dict]) -> bytes:
    """SSIM and mask fidelity per generator: mean with one standard deviation."""
    figure = _figure(6.0, 3.0)
    names = list(quality)
    for j, (key, label) in enumerate((("ssim", "SSIM vs the real image"), ("mask_fidelity", "mask fidelity (Dice)"))):
        ax = figure.add_subplot(1, 2, j + 1)
        means = [(quality[n].get(key) or {}).get("mean") or 0.0 for n in names]
        stds = [(quality[n].get(key) or {}).get("std") or 0.0 for n in names]
        ax.bar(names, means, yerr=stds, color=[f"C{k}" for k in range(len(names))], capsize=3)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, axis="y")
    return _png(figure)


def generator_grid(grids: dict[str, Sequence[tuple]]) -> bytes:
    """The same real masks (rows) through each generator (columns), the real image last.

    ``grids[name]`` holds (mask, generated image, real image) per row, in the same order for every name.
    """
    names = list(grids)
    n = min(len(rows) for rows in grids.values())
    columns = 2 + len(names)
    figure = _figure(1.6 * columns, 1.7 * max(1, n))
    for i in range(n):
        first = grids[names[0]][i]
        panels = [first[0], *(grids[name][i][1] for name in names), first[2]]
        for j, (panel, header) in enumerate(zip(panels, ["mask", *names, "real image"])):
            ax = figure.add_subplot(max(1, n), columns, i * columns + j + 1)
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.dtype == bool else 255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(header, fontsize=8)
    return _png(figure)


def per_image_scatter(results: Sequence[dict], runs: Sequence[dict], diagnoses: Sequence[str | None]) -> bytes:
    """Per test image: real-only Dice (x) against Dice with synthetic pairs (y), each the mean over
    seeds, one panel per synthetic count, coloured by the image's diagnosis; the diagonal is no change."""
    counts = [r["synthetic_count"] for r in results if r["synthetic_count"] != 0]
    mean_dice = {
        count: np.mean([run["dice_per_image"] for run in runs if run["synthetic_count"] == count], axis=0)
        for count in [0, *counts]
    }
    labels = [d or "unlabelled" for d in diagnoses]
    names = sorted(set(labels))
    colours = {name: f"C{k % 10}" for k, name in enumerate(names)}
    figure = _figure(3.6 * len(counts) + 0.8, 3.6)
    for k, count in enumerate(counts):
        ax = figure.add_subplot(1, len(counts), k + 1)
        ax.plot([0, 1], [0, 1], color="tab:gray", linewidth=1, linestyle="--")
        for name in names:
            chosen = [i for i, label in enumerate(labels) if label == name]
            ax.scatter(mean_dice[0][chosen], mean_dice[count][chosen], s=16, color=colours[name], label=name)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("Dice, real only")
        ax.set_ylabel(f"Dice, + {count} synthetic")
        ax.grid(alpha=0.3)
        if k == 0 and len(names) > 1:
            ax.legend(fontsize=7, loc="lower right")
    return _png(figure)


def nearest_distance_histogram(synthetic: np.ndarray, test: np.ndarray, reference: float) -> bytes:
    """Distance to the nearest real training image: synthetic images against real test images."""
    figure = _figure(5.2, 3.4)
    ax = figure.add_subplot()
    a, b = _finite(synthetic), _finite(test)
    both = np.concatenate([a, b])
    bins = np.linspace(both.min(), both.max() + 1e-9, 26)
    ax.hist(b, bins=bins, density=True, alpha=0.6, color="tab:blue", label=f"real test images (n={b.size})")
    ax.hist(a, bins=bins, density=True, alpha=0.6, color="tab:orange", label=f"synthetic images (n={a.size})")
    ax.axvline(reference, color="black", linestyle="--", linewidth=1, label="5th percentile of the test images")
    ax.set_xlabel("distance to the nearest real training image (segmenter encoder features)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return _png(figure)


def triplet_grid(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    headers: tuple[str, str, str],
    captions: Sequence[str] | None = None,
) -> bytes:
    """One row per example: (mask bool HxW, image uint8 HxWx3, other image uint8 HxWx3), an optional
    caption per row under its first panel."""
    n = max(1, len(rows))
    figure = _figure(6.0, 2.0 * n)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            ax = figure.add_subplot(n, 3, 3 * i + j + 1)
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.dtype == bool else 255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(headers[j], fontsize=9)
            if j == 0 and captions is not None and i < len(captions):
                ax.set_xlabel(captions[i], fontsize=7, loc="left")
    return _png(figure)


def feature_histograms(real: dict[str, np.ndarray], sampled: dict[str, np.ndarray], labels: tuple[str, str]) -> bytes:
    """Side-by-side histograms per feature (e.g. area fraction, solidity) of two sets of masks."""
    names = list(real)
    figure = _figure(4.2 * len(names), 3.2)
    for k, name in enumerate(names):
        ax = figure.add_subplot(1, len(names), k + 1)
        a, b = _finite(real[name]), _finite(sampled[name])
        both = np.concatenate([a, b]) if a.size + b.size else np.array([0.0, 1.0])
        bins = np.linspace(both.min(), both.max() + 1e-9, 21)
        ax.hist(a, bins=bins, alpha=0.6, density=True, label=f"{labels[0]} (n={a.size})", color="tab:blue")
        ax.hist(b, bins=bins, alpha=0.6, density=True, label=f"{labels[1]} (n={b.size})", color="tab:orange")
        ax.set_xlabel(name.replace("_", " "))
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    return _png(figure)


def distributions(values: dict[str, Sequence[float]], xlabel: str = "value") -> bytes:
    """One histogram panel per named list of per-image values (e.g. SSIM, mask fidelity Dice)."""
    names = [name for name in values if len(_finite(values[name]))]
    figure = _figure(4.2 * max(1, len(names)), 3.2)
    for k, name in enumerate(names):
        ax = figure.add_subplot(1, len(names), k + 1)
        data = _finite(values[name])
        ax.hist(data, bins=min(20, max(5, data.size // 2)), color="tab:green", alpha=0.8)
        ax.axvline(float(np.mean(data)), color="black", linestyle="--", label=f"mean {np.mean(data):.3f}")
        ax.set_title(f"{name} (n={data.size})", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    return _png(figure)


def image_realism(realism: dict) -> bytes:
    """Left: the two-sample tests' accuracy per fold and mean +- std (0.5 = indistinguishable).
    Middle: Wasserstein distances per Lab channel, inside and outside the lesion. Right (when
    measured): the colour spread across images, generated over real (1 = as varied as the data)."""
    spread = realism.get("colour_spread")
    panels = 3 if spread else 2
    figure = _figure(4.5 * panels, 3.4)
    ax = figure.add_subplot(1, panels, 1)
    tests = (("real vs generated", "c2st"), ("real train vs real test", "reference_c2st"))
    for x, (name, key) in enumerate(tests):
        folds = realism.get(f"{key}_fold_accuracies") or []
        mean, std = realism.get(f"{key}_accuracy"), realism.get(f"{key}_std")
        ax.scatter([x] * len(folds), folds, s=14, color="tab:gray", alpha=0.7, zorder=3)
        if mean is not None:
            ax.bar(x, mean, yerr=std, width=0.5, color="tab:orange" if x == 0 else "tab:blue", alpha=0.7, capsize=4)
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance (indistinguishable)")
    ax.set_xticks(range(len(tests)), [name for name, _ in tests], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("cross-validated classifier accuracy")
    ax.legend(fontsize=7, loc="lower right")
    ax = figure.add_subplot(1, panels, 2)
    distances = realism.get("colour_distances") or {}
    channels = ("L", "a", "b")
    for k, region in enumerate(("inside", "outside")):
        values = [(distances.get(region) or {}).get(c) for c in channels]
        ax.bar(np.arange(3) + (k - 0.5) * 0.38, [v if v is not None else 0.0 for v in values], width=0.38,
               label=f"{region} the lesion", color="tab:red" if k == 0 else "tab:olive")
    ax.set_xticks(range(3), [f"{c}*" for c in channels])
    ax.set_ylabel("Wasserstein distance, real vs generated (Lab units)")
    ax.legend(fontsize=7)
    if spread:
        ax = figure.add_subplot(1, panels, 3)
        for k, region in enumerate(("inside", "outside")):
            ratios = [((spread.get(region) or {}).get(c) or {}).get("ratio") for c in channels]
            ax.bar(np.arange(3) + (k - 0.5) * 0.38, [r if r is not None else 0.0 for r in ratios], width=0.38,
                   label=f"{region} the lesion", color="tab:red" if k == 0 else "tab:olive")
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="as varied as the real images")
        ax.set_xticks(range(3), [f"{c}*" for c in channels])
        ax.set_ylabel("colour spread across images, generated / real")
        ax.legend(fontsize=7)
    return _png(figure)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]
