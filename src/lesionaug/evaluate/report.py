"""The report folder: ``report.json``, ``report.md`` and PNG plots, each written atomically.

``evaluate`` and ``quality`` each own one section of the report. A command writes its section and
its plots and keeps the other command's section when the folder already holds a report, so one
folder can carry the whole story (the README's main job runs both). The Markdown is rendered
from ``report.json`` every time, so the two never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lesionaug import __version__
from lesionaug.atomic_files import write_bytes_atomic, write_text_atomic
from lesionaug.errors import ConfigError
from lesionaug.formats import REPORT_SCHEMA

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SECTIONS = ("evaluate", "quality")


def read_report(out_dir: Path) -> dict | None:
    """The folder's report, or None when it has none (a report of another schema is an error)."""
    path = Path(out_dir) / REPORT_JSON
    if not path.exists():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the existing report cannot be read ({exc})", path=path, fix="delete it or choose another --out"
        ) from None
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        raise ConfigError("not a lesionaug report", path=path, fix="choose another --out")
    return report


def write_report(out_dir: Path, section: str, data: dict, plots: dict[str, bytes]) -> Path:
    """Write ``section`` (its data and its PNG plots, by file stem) into the report folder.

    Returns the path of ``report.json``. Plots are written first and the JSON last, so a report
    never names a plot that is not there.
    """
    if section not in SECTIONS:
        raise ValueError(f"unknown report section {section!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("the report path is a file", path=out_dir, fix="pass a folder to --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = read_report(out_dir) or {"schema": REPORT_SCHEMA, "sections": {}}
    files = {}
    for stem, png in plots.items():
        name = f"{stem}.png"
        write_bytes_atomic(out_dir / name, png)
        files[stem] = name
    report["tool_version"] = __version__
    report["sections"][section] = {**data, "plots": files}
    write_text_atomic(out_dir / REPORT_MD, render_markdown(report))
    path = out_dir / REPORT_JSON
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    return path


def _json_default(obj):
    if hasattr(obj, "__fspath__"):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def render_markdown(report: dict) -> str:
    lines = ["# lesionaug report", "", f"Written by lesionaug {report.get('tool_version', __version__)}.", ""]
    sections = report.get("sections", {})
    if "evaluate" in sections:
        lines += _evaluate_markdown(sections["evaluate"])
    if "quality" in sections:
        lines += _quality_markdown(sections["quality"])
    return "\n".join(lines).rstrip() + "\n"


def _image(lines: list[str], plots: dict, stem: str, caption: str) -> None:
    if stem in plots:
        lines += [f"![{caption}]({plots[stem]})", ""]


def _budget_sentence(segmenter: dict, setup: dict) -> str:
    steps = setup.get("steps_per_segmenter")
    if steps is None:  # a report written before segmenters shared one step budget
        return f"Each trained for {segmenter.get('epochs')} epochs."
    how = ("as asked (--steps)" if segmenter.get("steps") is not None
           else f"{segmenter.get('epochs')} epochs of the largest training set compared")
    return (f"Every segmenter takes the same {steps} optimizer steps ({how}, batch {segmenter.get('batch_size')}), "
            "so a larger training set never means more training.")


def _evaluate_markdown(data: dict) -> list[str]:
    setup = data.get("setup", {})
    segmenter = data.get("segmenter", {})
    share = setup.get("real_fraction", 1)
    fraction = f" ({share:g} of the split)" if share < 1 else ""
    lines = [
        "## What the synthetic pairs are worth to a segmenter",
        "",
        f"Segmenters ({segmenter.get('arch')}, {segmenter.get('image_size')} px, trained from scratch) on "
        f"{setup.get('real_train')} real training pairs{fraction}"
        f" plus N synthetic pairs, {setup.get('repeats')} seed(s) each, scored on the "
        f"{setup.get('real_test')} images of the real test split (never on synthetic images). "
        + _budget_sentence(segmenter, setup),
        "",
        "| synthetic pairs | seeds | Dice mean | Dice std | Jaccard mean | thr. Jaccard mean | Dice vs real only "
        "| 95% CI |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in data.get("results", []):
        ci = r.get("delta_ci95")
        ci_text = "n/a" if not ci else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
        lines.append(
            f"| {r['synthetic_count']} | {r['repeats']} | {_num(r['dice_mean'])} | {_num(r['dice_std'])} | "
            f"{_num(r['jaccard_mean'])} | {_num(r.get('threshold_jaccard_mean'))} | "
            f"{_signed(r.get('delta_vs_real'))} | {ci_text} |"
        )
    lines += [
        "",
        "The difference is paired: each seed's segmenter with synthetic pairs minus the same seed's "
        f"real-only segmenter; the interval is {data.get('ci_method', 'a t interval over seeds')}.",
        "",
    ]
    for note in data.get("notes", []):
        lines += [f"- {note}"]
    if data.get("notes"):
        lines.append("")
    plots = data.get("plots", {})
    _image(lines, plots, "dice_vs_synthetic", "Dice against the number of synthetic pairs")
    _image(lines, plots, "synthetic_grid", "mask | synthetic image | nearest real training image")
    _image(lines, plots, "mask_realism", "mask area and solidity, real against synthetic")
    return lines


def _quality_markdown(data: dict) -> list[str]:
    lines = ["## Image quality and mask fidelity", ""]
    ssim, fidelity = data.get("ssim", {}), data.get("mask_fidelity", {})
    lines += [
        f"Generated one image for each of the {data.get('n')} real masks of the {data.get('split')} split, with "
        f"the sample's own labels, at {data.get('size')} px ({data.get('steps')} steps).",
        "",
        "| measure | mean | std | n |",
        "|---|---:|---:|---:|",
        f"| SSIM against the real image | {_num(ssim.get('mean'))} | {_num(ssim.get('std'))} | {ssim.get('n')} |",
        f"| mask fidelity (Dice of a real-data segmenter on the generated image against its mask) | "
        f"{_num(fidelity.get('mean'))} | {_num(fidelity.get('std'))} | {fidelity.get('n')} |",
    ]
    references = (
        ("segmenter_on_real", "the same segmenter on the real images (the ceiling for fidelity)"),
        ("segmenter_prior", "the same segmenter on a flat skin-coloured image (the floor: no lesion to see)"),
    )
    for key, name in references:
        reference = data.get(key)
        if reference:
            lines.append(
                f"| {name} | {_num(reference.get('mean'))} | {_num(reference.get('std'))} | {reference.get('n')} |"
            )
    lines.append("")
    fid = data.get("fid")
    if fid and fid.get("status") == "ok":
        lines += [
            f"FID {_num(fid['fid'], 3)}, KID {_num(fid['kid_mean'], 5)} +- {_num(fid['kid_std'], 5)} "
            f"(features from {fid.get('weights')}).",
            "",
        ]
    elif fid:
        lines += [f"FID/KID: {fid.get('message')}", ""]
    plots = data.get("plots", {})
    _image(lines, plots, "quality_distributions", "SSIM and mask fidelity per image")
    _image(lines, plots, "quality_grid", "mask | generated image | real image of that mask")
    return lines
