"""Example data: a small procedural dermoscopy-like dataset in the exact on-disk layout of a real one.

    write_demo_dataset("example", n=120, layout="isic2018", size=128, seed=0)

Layouts: ``isic2018`` (Task 1 images and masks per split, Task 2 attribute masks, Task 3 one-hot CSVs
and lesion groupings), ``isic2017`` (Data folders with superpixels and metadata CSV, Part 1 masks, Part 2
features JSON, Part 3 CSV), ``ham10000`` (two image parts, metadata CSV, Tschandl's masks), ``ph2`` (the
``PH2 Dataset images`` tree with BMPs and ``PH2_dataset.txt``) and ``paired`` (``{train,val,test}/
{images,masks}`` with ``labels.csv``). Layouts with splits get about 60/15/25 train/val/test.

Labels are drawn first (diagnosis, then attributes, age, sex, site conditioned on it), then each image
is rendered from them (``demo_render``), so labels and masks are learnable. Everything is derived from
(seed, sample index): the same seed writes the same bytes. The folder is written under a temporary
name and renamed at the end, so a crash never leaves half a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionaug.demo.styles import DEFAULT_STYLE, STYLES

DEMO_LAYOUTS = ("isic2018", "isic2017", "ham10000", "ph2", "paired")
TASK2_ATTRIBUTES = ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")
TASK3_CODES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
SPLIT_FRACTIONS = (0.60, 0.15, 0.25)

# Diagnosis mix per layout (flatter than the real ones, so every class appears in small sets).
DIAGNOSIS_MIX: dict[str, dict[str, float]] = {
    "isic2018": {"nv": 0.35, "mel": 0.2, "bkl": 0.15, "bcc": 0.1, "akiec": 0.08, "df": 0.06, "vasc": 0.06},
    "isic2017": {"nevus": 0.45, "mel": 0.3, "sk": 0.25},
    "ph2": {"common_nevus": 0.4, "atypical_nevus": 0.4, "mel": 0.2},
}
DIAGNOSIS_MIX["ham10000"] = DIAGNOSIS_MIX["paired"] = DIAGNOSIS_MIX["isic2018"]

# P(attribute | diagnosis); attributes outside a layout's vocabulary are dropped.
ATTRIBUTE_ODDS: dict[str, dict[str, float]] = {
    "mel": {"pigment_network": 0.6, "negative_network": 0.3, "streaks": 0.45, "globules": 0.4, "milia_like_cyst": 0.05},
    "nv": {"pigment_network": 0.7, "globules": 0.45, "streaks": 0.1, "negative_network": 0.05, "milia_like_cyst": 0.05},
    "bkl": {"milia_like_cyst": 0.7, "pigment_network": 0.15},
    "bcc": {"globules": 0.05},
    "akiec": {"pigment_network": 0.1},
    "df": {"pigment_network": 0.5, "negative_network": 0.15},
    "vasc": {},
    # PH2 criteria
    "common_nevus": {"pigment_network": 0.8, "dots_globules": 0.3},
    "atypical_nevus": {"atypical_pigment_network": 0.6, "pigment_network": 0.3, "dots_globules": 0.6, "streaks": 0.15},
}
ATTRIBUTE_ODDS["nevus"] = ATTRIBUTE_ODDS["nv"]
ATTRIBUTE_ODDS["sk"] = ATTRIBUTE_ODDS["bkl"]
PH2_MEL = {
    "atypical_pigment_network": 0.8,
    "dots_globules": 0.7,
    "streaks": 0.5,
    "regression": 0.4,
    "blue_whitish_veil": 0.5,
}
VOCABULARY = {
    "isic2018": TASK2_ATTRIBUTES,
    "ham10000": TASK2_ATTRIBUTES,
    "paired": TASK2_ATTRIBUTES,
    "isic2017": ("milia_like_cyst", "negative_network", "pigment_network", "streaks"),
    "ph2": (
        "pigment_network",
        "atypical_pigment_network",
        "dots_globules",
        "streaks",
        "regression",
        "blue_whitish_veil",
    ),
}
SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "neck", "scalp", "foot")
ATTRIBUTION = "Synthetic dermoscopy-like images generated procedurally by lesionaug demo-data ({made}).\n"
LICENSE = "CC0 1.0 Universal: the generated images, masks and labels are dedicated to the public domain.\n"


@dataclass(frozen=True)
class DemoCase:
    """One example's labels, drawn before its image is rendered."""

    index: int
    split: str
    diagnosis: str
    attributes: tuple[str, ...]
    age: int
    sex: str
    site: str
    lesion: int  # lesions may have several images (HAM10000)


def assign_splits(n: int, rng: np.random.Generator) -> list[str]:
    """About 60/15/25 train/val/test, every split non-empty once n >= 3, in a seeded order."""
    n_val = max(1, round(n * SPLIT_FRACTIONS[1])) if n >= 3 else 0
    n_test = max(1, round(n * SPLIT_FRACTIONS[2])) if n >= 3 else 0
    splits = ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    return [splits[i] for i in rng.permutation(n)]


def diagnosis_quota(n: int, layout: str, rng: np.random.Generator) -> list[str]:
    """``n`` diagnoses in the layout's proportions (largest remainder), in a seeded order."""
    mix = DIAGNOSIS_MIX[layout]
    exact = np.array(list(mix.values())) * n / sum(mix.values())
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    codes = [code for code, count in zip(mix, counts) for _ in range(count)]
    return [codes[i] for i in rng.permutation(n)]


def draw_cases(n: int, layout: str, seed: int) -> list[DemoCase]:
    """Labels for ``n`` examples: diagnosis from the layout's mix, then attributes, age, sex and site."""
    rng = np.random.default_rng([seed, 0x5EED])
    splits = assign_splits(n, rng)
    diagnoses = iter(diagnosis_quota(n, layout, rng))
    cases: list[DemoCase] = []
    lesion = 0
    for k in range(n):
        if layout == "ham10000" and cases and rng.uniform() < 0.2:  # another image of the previous lesion
            prev = cases[-1]
            cases.append(
                DemoCase(k, splits[k], prev.diagnosis, prev.attributes, prev.age, prev.sex, prev.site, prev.lesion)
            )
            continue
        code = next(diagnoses)
        odds = PH2_MEL if layout == "ph2" and code == "mel" else ATTRIBUTE_ODDS.get(code, {})
        attrs = tuple(a for a, p in odds.items() if a in VOCABULARY[layout] and rng.uniform() < p)
        if "pigment_network" in attrs and "atypical_pigment_network" in attrs:
            attrs = tuple(a for a in attrs if a != "pigment_network")
        low, high = (45, 85) if code in ("mel", "bcc", "akiec", "bkl", "sk") else (15, 65)
        age = int(rng.integers(low // 5, high // 5 + 1)) * 5
        sex = "male" if rng.uniform() < 0.52 else "female"
        site = SITES[int(rng.integers(len(SITES)))]
        cases.append(DemoCase(k, splits[k], code, attrs, age, sex, site, lesion))
        lesion += 1
    return cases


def render_case(
    case: DemoCase, size: int, seed: int, style: str = DEFAULT_STYLE
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from lesionaug.demo.render import render_lesion

    rng = np.random.default_rng([seed, case.index])
    return render_lesion(rng, size, case.diagnosis, case.attributes, STYLES[style])


# ----------------------------------------------------------------------------------------------- files


def save_image(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".bmp": "BMP"}.get(path.suffix, "PNG")
    options = {"quality": 92} if fmt == "JPEG" else {"compress_level": 6} if fmt == "PNG" else {}
    Image.fromarray(rgb).save(path, format=fmt, **options)


def save_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "BMP" if path.suffix == ".bmp" else "PNG"
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path, format=fmt)


def write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_notices(folder: Path, seed: int, style: str = DEFAULT_STYLE) -> None:
    """ATTRIBUTION.txt and LICENSE.txt, as in every ISIC challenge folder (naming the seed, and the style
    when it is not the default one)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = f"seed {seed}" if style == DEFAULT_STYLE else f"seed {seed}, style {style}"
    (folder / "ATTRIBUTION.txt").write_text(ATTRIBUTION.format(made=made), encoding="utf-8")
    (folder / "LICENSE.txt").write_text(LICENSE, encoding="utf-8")
