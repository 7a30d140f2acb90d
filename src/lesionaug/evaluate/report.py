"""The report folder: ``report.json``, ``report.md`` and PNG plots, each written atomically.

``evaluate`` and ``quality`` each own one section of the report. A command writes its section and
its plots and keeps the other command's section when the folder already holds a report, so one
folder can carry the whole story (the README's main job runs both). The Markdown is rendered
from ``report.json`` every time, so the two never disagree.

Wall-clock timings go to ``timings.json`` beside them, never into ``report.json``, so the same
command on the same machine writes the same ``report.json``, ``report.md`` and plots, byte for
byte; ``report.json`` records the machine (``environment``: library versions, CPU features).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lesionaug import __version__
from lesionaug.atomic_files import write_bytes_atomic, write_text_atomic
from lesionaug.environment import describe_environment, environment_record
from lesionaug.errors import ConfigError
from lesionaug.formats import REPORT_SCHEMA

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
TIMINGS_JSON = "timings.json"
SECTIONS = ("evaluate", "quality", "compare")


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


def write_report(
    out_dir: Path, section: str, data: dict, plots: dict[str, bytes], timings: dict | None = None
) -> Path:
    """Write ``section`` (its data and its PNG plots, by file stem) into the report folder, and its
    ``timings`` into ``timings.json``.

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
    report["environment"] = environment_record()
    report["sections"][section] = {**data, "plots": files}
    if timings is not None:
        _write_timings(out_dir, section, timings)
    write_text_atomic(out_dir / REPORT_MD, render_markdown(report))
    path = out_dir / REPORT_JSON
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    return path


def _write_timings(out_dir: Path, section: str, timings: dict) -> None:
    path = out_dir / TIMINGS_JSON
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    known = known if isinstance(known, dict) else {}
    known[section] = timings
    write_text_atomic(path, json.dumps(known, indent=2, sort_keys=True) + "\n")


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
    if "compare" in sections:
        lines += _compare_markdown(sections["compare"])
    if report.get("environment"):
        lines += ["## Machine", "", f"Computed on {describe_environment(report['environment'])} "
                  "(report.json lists every version and CPU feature).", ""]
    return "\n".join(lines).rstrip() + "\n"


def _image(lines: list[str], plots: dict, stem: str, caption: str) -> None:
    if stem in plots:
        lines += [f"![{caption}]({plots[stem]})", ""]


def _budget_sentence(segmenter: dict, setup: dict) -> str:
    steps = setup.get("steps_per_segmenter")
    if steps is None:  # a report written before segmenters shared one step budget
        return f"Each trained for {segmenter.get('epochs')} epochs."
    how = ("as asked (--seg-steps)" if segmenter.get("steps") is not None
           else f"{segmenter.get('epochs')} epochs of the largest training set compared")
    mixing = _mixing_words(segmenter.get("synthetic_share"), segmenter.get("real_finish"))
    return (f"Every segmenter takes the same {steps} optimizer steps ({how}, batch {segmenter.get('batch_size')}), "
            f"so a larger training set never means more training.{mixing}")


def _mixing_words(share: float | None, real_finish: float | None = None) -> str:
    """How an augmented segmenter's batches mix real and synthetic pairs (--synthetic-share, --real-finish)."""
    if share is None:
        return " Real and synthetic pairs are drawn alike, in proportion to their numbers."
    words = f" Batches with synthetic pairs are {share:.0%} synthetic and {1 - share:.0%} real (--synthetic-share)"
    if real_finish:
        words += f"; the last {real_finish:.0%} of their steps draw real pairs only (--real-finish)"
    return words + "."


def _interval(ci) -> str:
    return "n/a" if not ci else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def _p_value(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _real_pairs_words(setup: dict) -> str:
    if setup.get("real_count") is not None:
        return f" ({setup['real_train']} of the split's {setup.get('real_train_split')}, --real-count {setup['real_count']})"
    share = setup.get("real_fraction", 1)
    return f" ({share:g} of the split)" if share < 1 else ""


def _extra_data_warning(setup: dict) -> list[str]:
    extra = setup.get("generator_extra_real_pairs")
    if not extra:
        return []
    return [
        f"> **The generator saw {extra} real training pairs the segmenters did not get** "
        "(run with --allow-generator-extra-data). The +synthetic segmenters learn from those pairs through "
        "the synthetic images, so a gain below may come from that real data rather than from synthesis.",
        "",
    ]


def _results_table(results: list[dict]) -> list[str]:
    lines = [
        "| synthetic pairs | seeds | Dice mean | Dice std | Jaccard mean | thr. Jaccard mean | gain in Dice "
        "| 95% CI, images and seeds | 95% CI, seeds only (t) | Wilcoxon p | images better / worse |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in results:
        better = "" if r.get("images_better") is None else f"{r['images_better']} / {r['images_worse']}"
        lines.append(
            f"| {r['synthetic_count']} | {r['repeats']} | {_num(r['dice_mean'])} | {_num(r['dice_std'])} | "
            f"{_num(r['jaccard_mean'])} | {_num(r.get('threshold_jaccard_mean'))} | "
            f"{_signed(r.get('delta_vs_real'))} | {_interval(r.get('delta_ci95'))} | "
            f"{_interval(r.get('delta_t_ci95'))} | {_p_value(r.get('p_wilcoxon'))} | {better} |"
        )
    return lines


def _diagnosis_table(results: list[dict]) -> list[str]:
    largest = results[-1] if results else {}
    groups = largest.get("per_diagnosis")
    if not groups:
        return []
    lines = [
        f"Per diagnosis of the test images, with {largest['synthetic_count']} synthetic pairs:",
        "",
        "| diagnosis | test images | Dice real only | Dice with synthetic | gain | 95% CI, images and seeds |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, g in groups.items():
        lines.append(
            f"| {name} | {g['n_images']} | {_num(g['dice_real_only'])} | {_num(g['dice_with_synthetic'])} | "
            f"{_signed(g['delta'])} | {_interval(g.get('bootstrap_ci95'))} |"
        )
    return lines + [""]


def _memorisation_markdown(found: dict | None) -> list[str]:
    if not found:
        return []
    syn, test = found["synthetic_to_train"], found["test_to_train"]
    copies, below = found["copy_retrieval"], found["synthetic_below_test_5th_percentile"]
    return [
        "### Memorisation check",
        "",
        f"Distance from each synthetic image to its nearest real training image, in the {found['feature_space']}. "
        f"Self-check: {copies[0]} of {copies[1]} training images with added noise find themselves as nearest. "
        f"Nearest-training-image distance, synthetic: median {syn['median']:.3f} (min {syn['min']:.3f}); real test "
        f"images: median {test['median']:.3f} (min {test['min']:.3f}). {below[0]} of {below[1]} synthetic images "
        f"are closer to a training image than 95% of test images are ({found['test_5th_percentile']:.3f}); about "
        "5% would be without copying.",
        "",
    ]


def _evaluate_markdown(data: dict) -> list[str]:
    setup = data.get("setup", {})
    segmenter = data.get("segmenter", {})
    augment = segmenter.get("augment")
    augment_words = f", {augment} augmentation of real and synthetic pairs alike" if augment else ""
    lines = [
        "## What the synthetic pairs are worth to a segmenter",
        "",
        *_extra_data_warning(setup),
        f"Segmenters ({segmenter.get('arch')}, {segmenter.get('image_size')} px, trained from scratch"
        f"{augment_words}) on {setup.get('real_train')} real training pairs{_real_pairs_words(setup)}"
        f" plus N synthetic pairs, {setup.get('repeats')} seed(s) each, scored on the "
        f"{setup.get('real_test')} images of the real test split (never on synthetic images). "
        + _budget_sentence(segmenter, setup),
        "",
        *_results_table(data.get("results", [])),
        "",
        "The gain is paired: per test image, each seed's segmenter with synthetic pairs minus the same seed's "
        "real-only segmenter, averaged over seeds; its mean is the gain in Dice. The first interval is "
        f"{data.get('ci_method', 'a t interval over seeds')}. The p-value is the two-sided Wilcoxon signed-rank "
        "test of the per-image gains.",
        "",
        *_diagnosis_table(data.get("results", [])),
    ]
    for note in data.get("notes", []):
        lines += [f"- {note}"]
    if data.get("notes"):
        lines.append("")
    plots = data.get("plots", {})
    _image(lines, plots, "dice_vs_synthetic", "Dice against the number of synthetic pairs, with the paired gain's interval")
    _image(lines, plots, "per_image_dice", "per test image: Dice real only against Dice with synthetic pairs")
    lines += _memorisation_markdown(data.get("memorisation"))
    _image(lines, plots, "synthetic_grid", "the synthetic images closest to a real training image, and that image")
    _image(lines, plots, "memorisation", "nearest-training-image distances, synthetic against real test images")
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
    lines += _realism_markdown(data.get("image_realism"))
    plots = data.get("plots", {})
    _image(lines, plots, "image_realism", "classifier two-sample tests and Lab colour distances")
    _image(lines, plots, "quality_distributions", "SSIM and mask fidelity per image")
    _image(lines, plots, "quality_grid", "mask | generated image | real image of that mask")
    return lines


def _compare_markdown(data: dict) -> list[str]:
    """The generators side by side: Dice and gain per count, paired differences, quality."""
    setup, plots = data.get("setup", {}), data.get("plots", {})
    lines = ["## Generators compared", "",
             f"Segmenters trained on {setup.get('real_train')} real training pairs plus each generator's synthetic "
             f"pairs, scored on {setup.get('real_test')} real test images; every segmenter takes "
             f"{setup.get('steps_per_segmenter')} optimizer steps, and the real-only segmenters (the same seeds) are "
             f"shared by every generator.{_mixing_words(setup.get('synthetic_share'), setup.get('real_finish'))} "
             f"Intervals: {data.get('ci_method')}.", "",
             "| generator | synthetic | Dice mean ± std | Jaccard | gain vs real-only | 95% CI (images, seeds) | p |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name, generator in data.get("generators", {}).items():
        for r in generator.get("results", []):
            lines.append(f"| {name} | {r['synthetic_count']} | {_num(r['dice_mean'])} ± {_num(r['dice_std'])} | "
                         f"{_num(r['jaccard_mean'])} | {_signed(r['delta_vs_real'])} | {_interval(r['delta_ci95'])} | "
                         f"{_p_value(r['p_wilcoxon'])} |")
    lines.append("")
    if data.get("pairwise"):
        lines += ["Paired difference between generators (A's segmenter minus B's of the same seed, per test image):",
                  "", "| A | B | synthetic | Dice A | Dice B | A - B | 95% CI (images, seeds) | p |",
                  "|---|---|---:|---:|---:|---:|---|---:|"]
        for p in data["pairwise"]:
            lines.append(f"| {p['a']} | {p['b']} | {p['synthetic_count']} | {_num(p['dice_a'])} | {_num(p['dice_b'])} | "
                         f"{_signed(p['delta'])} | {_interval(p['delta_ci95'])} | {_p_value(p['p_wilcoxon'])} |")
        lines.append("")
    rows = [(n, g["quality"]) for n, g in data.get("generators", {}).items() if (g.get("quality") or {}).get("status") == "ok"]
    if rows:
        lines += ["| generator | SSIM vs real image | mask fidelity (Dice) | images |", "|---|---:|---:|---:|"]
        for name, q in rows:
            lines.append(f"| {name} | {_num((q.get('ssim') or {}).get('mean'))} | "
                         f"{_num((q.get('mask_fidelity') or {}).get('mean'))} | {q.get('n')} |")
        lines.append("")
    _image(lines, plots, "compare_dice", "Dice against synthetic count per generator")
    _image(lines, plots, "compare_quality", "SSIM and mask fidelity per generator")
    _image(lines, plots, "compare_grid", "the same masks through each generator")
    return lines


def _realism_markdown(realism: dict | None) -> list[str]:
    if not realism or realism.get("status") != "ok":
        return []
    lines = [
        "### Image realism",
        "",
        "A small CNN trained from scratch tries to tell two sets of images apart; its "
        f"{realism.get('config', {}).get('folds')}-fold cross-validated accuracy is 0.5 when it cannot, 1.0 when "
        "every image gives itself away. The real-against-real test shows what indistinguishable looks like at "
        "this sample size.",
        "",
        "| two-sample test | images per set | accuracy | std over folds |",
        "|---|---:|---:|---:|",
        f"| real images of the split against the generated ones | {realism.get('c2st_n_per_sample')} | "
        f"{_num(realism.get('c2st_accuracy'))} | {_num(realism.get('c2st_std'))} |",
        f"| real training against real images of the split (reference) | {realism.get('reference_n_per_sample')} | "
        f"{_num(realism.get('reference_c2st_accuracy'))} | {_num(realism.get('reference_c2st_std'))} |",
        "",
        "Colour: Wasserstein distance between real and generated pixels per CIE Lab channel (L* lightness 0-100, "
        "a* green-red, b* blue-yellow), inside and outside the lesion mask.",
        "",
        "| region | L* | a* | b* |",
        "|---|---:|---:|---:|",
    ]
    for region, values in (realism.get("colour_distances") or {}).items():
        lines.append(f"| {region} the lesion | " + " | ".join(_num(values.get(c), 2) for c in ("L", "a", "b")) + " |")
    spread = realism.get("colour_spread")
    if spread:
        lines += [
            "",
            "Colour spread: how much the images' mean colour varies from image to image (standard deviation across "
            "images of each image's mean, Lab units), real and generated. A ratio below 1 means the generated images "
            "are more alike in colour than the real ones.",
            "",
            "| region | L* real / generated (ratio) | a* real / generated (ratio) | b* real / generated (ratio) |",
            "|---|---:|---:|---:|",
        ]
        for region, values in spread.items():
            cells = [f"{_num(v.get('real'), 2)} / {_num(v.get('generated'), 2)} ({_num(v.get('ratio'), 2)})"
                     for v in (values.get(c) or {} for c in ("L", "a", "b"))]
            lines.append(f"| {region} the lesion | " + " | ".join(cells) + " |")
    return lines + [""]
