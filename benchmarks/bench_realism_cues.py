"""What gives the generated images away, and does the prompt steer their colour?

``quality`` reports one number for image realism: the cross-validated accuracy of a small CNN
trained to tell the split's real images from generated ones (``lesionaug.evaluate.image_realism``;
0.5 = it cannot). This benchmark repeats that test on reduced views of the same two sets of images,
so each view removes one cue and the accuracy that is left says how much the others give away:

- ``full``: the images as ``quality`` tests them;
- ``field_of_view_imposed``: every generated image multiplied by the field of view (pixels brighter
  than a fifth of the 95th luminance percentile) of a seeded real training image, so both sets have
  real dermatoscope vignettes; if the vignette were the cue, the accuracy would fall;
- ``centre``: the central half of each side (no vignette, no border);
- ``centre_grey``: the same in luminance only (no colour);
- ``centre_blurred``: the same under a Gaussian blur of 2 px (no fine texture);
- ``mean_colour``: each image replaced by its mean colour (only the global colour is left);
- ``colour_matched``: each generated image's colours moved, region by region, onto those of the
  real training pair whose labels its prompt took (the manifest's ``source_lesion_id``): per Lab
  channel the lesion's and the skin's mean and standard deviation made the real pair's (Reinhard
  et al.'s colour transfer, 2001), blended across the lesion border over ``--blend`` px. What is
  left is what colour does not explain: texture, shapes, the field of view.

Beside them, ``quality``'s colour spread (standard deviation across images of each image's mean
Lab, real against generated) and prompt steering: the generated pairs grouped by a label of their
prompt (``--group-by``: diagnosis, or site), the mean skin and lesion Lab of each group, and the
spread of the group means for the real training images grouped the same way. A generator that
ignores its prompt has group means that differ only by sampling noise.

    python benchmarks/bench_realism_cues.py example --augmented example-augmented \\
        --labels example/isic_archive_metadata.csv --name light

With no arguments it reads ``make demo``'s folders (``example``, ``example-augmented``) and says so
in one line when they are missing. The synthetic pairs are read from the augmented folder's
manifest (at most as many as the split has real images, the first by index). Results go to
``results/realism_cues.json`` under ``--name``; other names in the file are kept.

``--write-colour-matched DIR`` also writes a copy of the augmented folder with every synthetic
image colour-matched as above (manifest digests updated), so ``lesionaug evaluate --augmented DIR``
measures what the transfer is worth to the segmenters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "realism_cues.json"
VIEWS = ("full", "field_of_view_imposed", "centre", "centre_grey", "centre_blurred", "mean_colour", "colour_matched")


def field_of_view(image: np.ndarray) -> np.ndarray:
    """Pixels inside the dermatoscope's circle: brighter than a fifth of the 95th luminance percentile."""
    luminance = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return luminance > 0.2 * np.percentile(luminance, 95)


def centre(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.ascontiguousarray(image[h // 4 : h - h // 4, w // 4 : w - w // 4])


def grey(image: np.ndarray) -> np.ndarray:
    luminance = np.rint(image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return np.repeat(luminance[..., None], 3, axis=2)


def blurred(image: np.ndarray, radius: float = 2.0) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def mean_colour(image: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.rint(image.reshape(-1, 3).mean(0)).astype(np.uint8), image.shape).copy()


def colour_statistics(image: np.ndarray, mask: np.ndarray) -> dict:
    """Per region, the mean and standard deviation of each Lab channel: the lesion, and the skin
    (outside the lesion, inside the field of view); None for an empty region."""
    from lesionaug.evaluate.image_realism import srgb_to_lab

    lab = srgb_to_lab(image)
    out = {}
    for region, chosen in (("lesion", mask), ("skin", field_of_view(image) & ~mask)):
        out[region] = (lab[chosen].mean(0), lab[chosen].std(0)) if chosen.any() else None
    return out


def match_colours(image: np.ndarray, mask: np.ndarray, reference: dict, blend: float = 1.5,
                  max_scale: float = 2.0) -> np.ndarray:
    """``image`` with its lesion's and skin's Lab statistics moved onto ``reference``'s
    (``colour_statistics`` of a real pair): each channel shifted and scaled (the scale kept within
    [1/max_scale, max_scale]), the two regions' transforms blended across the border by the mask
    blurred over ``blend`` px. A region missing on either side keeps its colours."""
    from scipy.ndimage import gaussian_filter

    from lesionaug.evaluate.image_realism import lab_to_srgb, srgb_to_lab

    lab = srgb_to_lab(image)
    own = colour_statistics(image, mask)
    moved = []
    for region in ("lesion", "skin"):
        if own[region] is None or reference.get(region) is None:
            moved.append(lab)
            continue
        (mean, std), (ref_mean, ref_std) = own[region], reference[region]
        scale = np.clip(ref_std / np.maximum(std, 1e-6), 1 / max_scale, max_scale)
        moved.append((lab - mean) * scale + ref_mean)
    weight = gaussian_filter(mask.astype(np.float64), blend)[..., None] if blend > 0 else mask[..., None].astype(float)
    return lab_to_srgb(weight * moved[0] + (1 - weight) * moved[1])


def colour_reference(record: dict, train: list, statistics: list[dict], seed: int) -> int:
    """The position in ``train`` of the real pair a synthetic pair's colours are matched to: the one
    whose labels its prompt took (``source_lesion_id``, the first by id when a lesion has several
    images), else one of its diagnosis, else any; the last two drawn from (seed, the pair's index)."""
    labels = record.get("labels") or {}
    source = (labels.get("extra") or {}).get("source_lesion_id")
    usable = [i for i, stats in enumerate(statistics) if stats["lesion"] is not None and stats["skin"] is not None]
    if source is not None:
        for i in usable:
            if dict(train[i].labels.extra if train[i].labels else ()).get("lesion_id") == source:
                return i
    same = [i for i in usable if train[i].labels is not None and train[i].labels.diagnosis == labels.get("diagnosis")]
    pool = same or usable
    if not pool:
        raise ValueError("no real training pair has both a lesion and skin to take colours from")
    return pool[int(np.random.default_rng([seed, int(record["index"])]).integers(len(pool)))]


def views(real: list[np.ndarray], generated: list[np.ndarray], train: list[np.ndarray], seed: int,
          colour_matched: list[np.ndarray] | None = None) -> dict:
    """Each view's (real, generated) pair of image lists (``colour_matched`` only when given)."""
    rng = np.random.default_rng(seed)
    fields = [field_of_view(train[int(rng.integers(len(train)))]) for _ in generated]
    imposed = [(g * f[..., None]).astype(np.uint8) for g, f in zip(generated, fields)]
    real_centre, generated_centre = [centre(x) for x in real], [centre(x) for x in generated]
    return {
        "full": (real, generated),
        "field_of_view_imposed": (real, imposed),
        "centre": (real_centre, generated_centre),
        "centre_grey": ([grey(x) for x in real_centre], [grey(x) for x in generated_centre]),
        "centre_blurred": ([blurred(x) for x in real_centre], [blurred(x) for x in generated_centre]),
        "mean_colour": ([mean_colour(x) for x in real], [mean_colour(x) for x in generated]),
        **({"colour_matched": (real, colour_matched)} if colour_matched is not None else {}),
    }


def region_means(image: np.ndarray, mask: np.ndarray) -> dict:
    """Mean Lab of the lesion and of the skin (outside the lesion, inside the field of view)."""
    from lesionaug.evaluate.image_realism import srgb_to_lab

    lab = srgb_to_lab(image)
    skin = field_of_view(image) & ~mask
    return {"lesion": lab[mask].mean(0) if mask.any() else None, "skin": lab[skin].mean(0) if skin.any() else None}


def steering(groups_real: dict, groups_generated: dict) -> dict:
    """Per region: each group's mean Lab (real and generated) and the spread (std) of the group means."""
    out = {}
    shared = sorted(set(groups_real) & set(groups_generated))
    for region in ("lesion", "skin"):
        rows, spread = {}, {}
        for name, groups in (("real", groups_real), ("generated", groups_generated)):
            means = {}
            for group in shared:
                values = [v[region] for v in groups[group] if v[region] is not None]
                if values:
                    means[group] = np.mean(values, axis=0)
            rows[name] = {g: [round(float(c), 2) for c in m] for g, m in means.items()}
            stacked = np.array(list(means.values()))
            spread[name] = ([round(float(s), 3) for s in stacked.std(0, ddof=1)] if len(stacked) >= 2 else None)
        out[region] = {"group_means_lab": rows, "spread_of_group_means_lab": spread}
    out["groups"] = {g: {"real": len(groups_real[g]), "generated": len(groups_generated[g])} for g in shared}
    return out


def write_colour_matched(augmented: Path, out: Path, records: list[dict], generated: list, references: list[int],
                         statistics: list[dict], train_ids: list[str], blend: float) -> None:
    """A copy of ``augmented`` whose synthetic images are colour-matched (re-encoded in their own
    format; the manifest's image digests follow, its lines otherwise as they were, and
    ``colour-references.json`` beside it names each pair's real reference)."""
    import hashlib
    import shutil

    from lesionaug.output.pair_writer import encode_image

    if out.exists():
        raise SystemExit(f"bench_realism_cues: {out} exists: give --write-colour-matched a new folder")
    shutil.copytree(augmented, out, symlinks=False)
    lines, chosen = [], {}
    for record, (image, mask), ref in zip(records, generated, references):
        path = out / record["image"]
        matched = match_colours(image, mask, statistics[ref], blend)
        if matched.shape[:2] != read_size(path):
            raise SystemExit(f"bench_realism_cues: {path} is not at the dataset's size; colour-match at its own size")
        fmt = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".bmp": "bmp"}[path.suffix.lower()]
        path.write_bytes(encode_image(matched, fmt))  # as augment encodes its pairs
        record = dict(record, sha256=dict(record["sha256"], image=hashlib.sha256(path.read_bytes()).hexdigest()))
        lines.append(json.dumps(record, separators=(",", ":")))
        chosen[record["id"]] = train_ids[ref]
    (out / "lesionaug-manifest.jsonl").write_text("\n".join(lines) + "\n")
    (out / "colour-references.json").write_text(json.dumps(chosen, indent=1) + "\n")


def read_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=Path("example"))
    parser.add_argument("--augmented", type=Path, default=Path("example-augmented"),
                        help="an augment output folder (its manifest)")
    parser.add_argument("--labels", type=Path, action="append", default=None)
    parser.add_argument("--split", default="test", help="the real images the generated ones are tested against")
    parser.add_argument("--group-by", default="diagnosis", choices=("diagnosis", "site"))
    parser.add_argument("--name", default="example", help="the key of this run in the JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blend", type=float, default=1.5, help="colour_matched: px over which the regions blend")
    parser.add_argument("--write-colour-matched", type=Path, default=None, metavar="DIR",
                        help="also write a copy of --augmented with every synthetic image colour-matched")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.labels is None:  # make demo's label table, when it is there
        default_labels = args.dataset / "isic_archive_metadata.csv"
        args.labels = [default_labels] if default_labels.is_file() else []
    if not args.dataset.is_dir() or not (args.augmented / "lesionaug-manifest.jsonl").is_file():
        missing = args.dataset if not args.dataset.is_dir() else args.augmented
        raise SystemExit(f"bench_realism_cues: {missing} not found: run `make demo` first, or pass a dataset "
                         "and --augmented FOLDER")

    import torch

    from lesionaug.dataset.files import read_image, read_mask
    from lesionaug.dataset.index import load_dataset
    from lesionaug.evaluate.image_realism import ColourSample, RealismConfig, colour_spread, two_sample_test

    started = time.perf_counter()
    index = load_dataset(args.dataset, labels=args.labels or None)
    split = sorted(index.usable(args.split), key=lambda s: s.id)
    train = sorted(index.usable("train"), key=lambda s: s.id)
    records = [json.loads(line) for line in (args.augmented / "lesionaug-manifest.jsonl").read_text().splitlines()
               if line.strip()]  # fmt: skip
    records = sorted((r for r in records if "image" in r and "mask" in r), key=lambda r: r["index"])
    size = read_image(split[0].image).shape[:2]

    def load(image_path, mask_path):
        from lesionaug.evaluate.segmenter import square_image

        image, mask = read_image(image_path), read_mask(mask_path)
        if image.shape[:2] != size:
            from PIL import Image

            image = square_image(image, size[0])
            mask = np.asarray(Image.fromarray(mask).resize(size[::-1], Image.Resampling.NEAREST))
        return image, mask

    real = [load(s.image, s.mask) for s in split]
    train_pairs = [load(s.image, s.mask) for s in train]
    generated = [load(args.augmented / r["image"], args.augmented / r["mask"]) for r in records]

    # 1. The realism test on each view (the first len(split) generated pairs, as quality tests them).
    config = RealismConfig(seed=args.seed)
    tested = [image for image, _ in generated[: len(real)]]
    statistics = [colour_statistics(image, mask) for image, mask in train_pairs]
    references = [colour_reference(r, train, statistics, args.seed) for r in records]
    matched = [match_colours(image, mask, statistics[ref], args.blend)
               for (image, mask), ref in zip(generated[: len(real)], references)]
    results = {}
    all_views = views([image for image, _ in real], tested, [image for image, _ in train_pairs], args.seed, matched)
    for name, (a, b) in all_views.items():
        outcome = two_sample_test(a, b, config)
        results[name] = {"c2st_accuracy": round(outcome.accuracy, 4), "c2st_std": round(outcome.std, 4)}
        print(f"{name:<24} C2ST {outcome.accuracy:.3f} +- {outcome.std:.3f}", flush=True)
    reference = two_sample_test([image for image, _ in train_pairs], [image for image, _ in real], config)

    # 2. Colour spread across images (quality's measure), real split against all generated pairs.
    real_colours, generated_colours = ColourSample(), ColourSample()
    for image, mask in real:
        real_colours.add(image, mask)
    for image, mask in generated:
        generated_colours.add(image, mask)
    spread = colour_spread(real_colours, generated_colours)

    # 3. Prompt steering: group by a label of the prompt.
    def label_of(labels: dict | None) -> str | None:
        return (labels or {}).get(args.group_by)

    groups_real: dict = {}
    for sample, (image, mask) in zip(train, train_pairs):
        key = getattr(sample.labels, args.group_by, None) if sample.labels is not None else None
        if key is not None:
            groups_real.setdefault(key, []).append(region_means(image, mask))
    groups_generated: dict = {}
    for record, (image, mask) in zip(records, generated):
        key = label_of(record.get("labels"))
        if key is not None:
            groups_generated.setdefault(key, []).append(region_means(image, mask))

    record = {
        "dataset": str(args.dataset), "augmented": str(args.augmented), "split": args.split,
        "n_real": len(real), "n_generated_tested": len(tested), "n_generated": len(generated),
        "reference_c2st_accuracy": round(reference.accuracy, 4), "reference_c2st_std": round(reference.std, 4),
        "views": results,
        "colour_spread": {region: {c: {k: (round(v, 3) if v is not None else None) for k, v in values.items()}
                                   for c, values in channels.items()} for region, channels in spread.items()},
        "prompt_steering": {"group_by": args.group_by, **steering(groups_real, groups_generated)},
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count()},
    }  # fmt: skip
    print(f"{'real train vs real split':<24} C2ST {reference.accuracy:.3f} +- {reference.std:.3f}")
    for region, channels in spread.items():
        print(f"colour spread {region} the lesion, generated / real: "
              + "  ".join(f"{c}* {v['ratio']:.2f}" if v["ratio"] is not None else f"{c}* n/a" for c, v in channels.items()))
    for region in ("lesion", "skin"):
        s = record["prompt_steering"][region]["spread_of_group_means_lab"]
        print(f"spread of the {args.group_by} groups' mean {region} Lab: real {s['real']}, generated {s['generated']}")
    if args.write_colour_matched is not None:
        write_colour_matched(args.augmented, args.write_colour_matched, records, generated, references, statistics,
                             [s.id for s in train], args.blend)
        record["colour_matched_copy"] = str(args.write_colour_matched)
        print(f"colour-matched copy: {args.write_colour_matched} (score it with lesionaug evaluate --augmented)")
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    previous[args.name] = record
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"written: {args.out} [{args.name}]")


if __name__ == "__main__":
    main()
