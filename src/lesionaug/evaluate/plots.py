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
    """Test Dice against the number of synthetic pairs: each run as a dot, mean +- std as error bars."""
    figure = _figure(5.2, 3.6)
    ax = figure.add_subplot()
    counts = [r["synthetic_count"] for r in results]
    ax.errorbar(
        counts,
        [r["dice_mean"] for r in results],
        yerr=[r["dice_std"] for r in results],
        fmt="o-",
        capsize=4,
        color="tab:blue",
        label="mean +- std over seeds",
    )
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
    ax.legend(fontsize=8, loc="lower right")
    return _png(figure)


def triplet_grid(rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], headers: tuple[str, str, str]) -> bytes:
    """One row per example: (mask bool HxW, image uint8 HxWx3, other image uint8 HxWx3)."""
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


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]
