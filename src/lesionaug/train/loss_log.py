"""A training run's loss history: ``loss.csv`` and ``loss_curve.png`` in the model folder, and
accelerate's trackers for ``train --report-to tensorboard|wandb``.

    MODEL_DIR/loss.csv         step,stage,loss,lr: one row per optimizer step, over every stage
    MODEL_DIR/loss_curve.png   the loss against the step (each step faint, a moving average bold)
    MODEL_DIR/logs/            TensorBoard event files (--report-to tensorboard)

A resumed run keeps the rows up to the step it resumes from and appends from there, so the file
and the plot cover the whole run once, whatever was interrupted. Trackers are accelerate's own
(``Accelerator(log_with=..., project_dir=MODEL_DIR)``, ``init_trackers``, ``log``, ``end_training``);
their packages are optional and checked before training starts.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path
from typing import Any

from lesionaug.atomic_files import write_bytes_atomic, write_text_atomic
from lesionaug.errors import BackendError
from lesionaug.formats import LOSS_CURVE_NAME, LOSS_LOG_NAME, TRACKER_DIR

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
PROJECT = "lesionaug"
SMOOTHING = 0.9  # exponential moving average drawn over the raw losses


def check_tracker(report_to: str | None) -> None:
    """Fail before training when the tracker's package is missing (exit 4, naming the extra)."""
    if report_to is None:
        return
    package = TRACKER_PACKAGES[report_to]
    if importlib.util.find_spec(package) is None:
        raise BackendError(
            f"--report-to {report_to} needs the {package} package, which is not installed",
            fix=f"pip install 'lesionaug[{report_to}]', or drop --report-to (loss.csv and loss_curve.png are written anyway)",
        )


def tracker_config(config: dict) -> dict:
    """The run's settings as trackers take them (numbers, strings and booleans only)."""
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}


class LossLog:
    """Appends each optimizer step's loss to ``loss.csv`` (main process) and to the tracker."""

    def __init__(self, out_dir: Path, accelerator: Any, report_to: str | None, config: dict, resume_step: int):
        self.path = Path(out_dir) / LOSS_LOG_NAME
        self.accelerator = accelerator
        self.report_to = report_to
        self.main = accelerator.is_main_process
        if self.main:
            kept = [row for row in read_loss_log(self.path) if row["step"] <= resume_step] if resume_step else []
            lines = ["step,stage,loss,lr\n"] + [f"{r['step']},{r['stage']},{r['loss']!r},{r['lr']!r}\n" for r in kept]
            write_text_atomic(self.path, "".join(lines))
        if report_to is not None:
            accelerator.init_trackers(PROJECT, config=tracker_config(config))

    def log(self, step: int, stage: str, loss: float, lr: float) -> None:
        if self.main:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{step},{stage},{loss!r},{lr!r}\n")
        if self.report_to is not None:
            self.accelerator.log({f"loss/{stage}": loss, "lr": lr}, step=step)

    def close(self) -> None:
        if self.report_to is not None:
            self.accelerator.end_training()


def read_loss_log(path: Path) -> list[dict]:
    """The rows of ``loss.csv`` (none when it is missing)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            rows.append({"step": int(row["step"]), "stage": row["stage"], "loss": float(row["loss"]),
                         "lr": float(row["lr"])})
        except (KeyError, TypeError, ValueError):
            continue  # a line cut by a crash
    return rows


def write_loss_curve(out_dir: Path) -> Path | None:
    """Plot ``loss.csv`` into ``loss_curve.png`` (atomically); None when there is nothing to plot."""
    rows = read_loss_log(Path(out_dir) / LOSS_LOG_NAME)
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for stage in dict.fromkeys(r["stage"] for r in rows):
        steps = [r["step"] for r in rows if r["stage"] == stage]
        losses = [r["loss"] for r in rows if r["stage"] == stage]
        smoothed, value = [], losses[0]
        for loss in losses:
            value = SMOOTHING * value + (1 - SMOOTHING) * loss
            smoothed.append(value)
        (line,) = ax.plot(steps, smoothed, linewidth=1.6, label=f"{stage} (moving average)")
        ax.plot(steps, losses, linewidth=0.6, alpha=0.35, color=line.get_color())
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log" if min(r["loss"] for r in rows) > 0 else "linear")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    path = Path(out_dir) / LOSS_CURVE_NAME
    write_bytes_atomic(path, buffer.getvalue())
    return path


__all__ = ["TRACKER_DIR", "LossLog", "check_tracker", "read_loss_log", "write_loss_curve"]
