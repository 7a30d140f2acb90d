"""The demo data's on-disk layouts: one writer per layout, names and label files exactly as the real ones.

Each writer takes the drawn cases (``demo.DemoCase``), renders them in a style (``styles.py``) and
writes images, masks and the layout's own label files under ``root`` (DATASETS.md section 1 for the names).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lesionaug.demo.cases import (
    TASK2_ATTRIBUTES,
    TASK3_CODES,
    DemoCase,
    render_case,
    save_image,
    save_mask,
    write_notices,
    write_text,
)

Progress = Callable[[], None]
ISIC_WORDS = {"train": "Training", "val": "Validation", "test": "Test"}
ISIC2017_WORDS = {"train": "Training", "val": "Validation", "test": "Test_v2"}
HAM_DX_TYPE = {"mel": "histo", "bcc": "histo", "akiec": "histo", "bkl": "histo", "nv": "follow_up", "df": "consensus"}
CONFIRM_TYPE = {
    "histo": "histopathology",
    "follow_up": "serial imaging showing no change",
    "consensus": "single image expert consensus",
}


TASK3_FIRST_ID = 24306  # the real release: Task 1/2 ids start at 0, Task 3 (HAM10000) ids here
ARCHIVE_METADATA = "isic_archive_metadata.csv"

# The archive's hierarchical diagnosis (diagnosis_1:diagnosis_2:diagnosis_3) of each demo code.
ARCHIVE_DIAGNOSIS = {
    "mel": ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma Invasive"),
    "nv": ("Benign", "Benign melanocytic proliferations", "Nevus"),
    "bkl": ("Benign", "Benign epidermal proliferations", "Pigmented benign keratosis"),
    "sk": ("Benign", "Benign epidermal proliferations", "Seborrheic keratosis"),
    "bcc": ("Malignant", "Malignant adnexal epithelial proliferations - Follicular", "Basal cell carcinoma"),
    "akiec": ("Indeterminate", "Indeterminate epidermal proliferations", "Solar or actinic keratosis"),
    "df": ("Benign", "Benign soft tissue proliferations - Fibro-histiocytic", "Dermatofibroma"),
    "vasc": ("Benign", "Benign soft tissue proliferations - Vascular", "Hemangioma"),
}
ARCHIVE_DIAGNOSIS["nevus"] = ARCHIVE_DIAGNOSIS["nv"]
# The demo's HAM-style sites in the archive's anatom_site_general vocabulary.
ARCHIVE_SITE = {
    "back": "posterior torso",
    "trunk": "anterior torso",
    "abdomen": "anterior torso",
    "chest": "anterior torso",
    "face": "head/neck",
    "neck": "head/neck",
    "scalp": "head/neck",
    "foot": "lower extremity",
}
ARCHIVE_COLUMNS = (
    "isic_id,attribution,copyright_license,age_approx,anatom_site_general,diagnosis_1,diagnosis_2,"
    "diagnosis_3,diagnosis_confirm_type,image_type,lesion_id,sex"
)


def isic_id(k: int, start: int = 0) -> str:
    return f"ISIC_{start + k:07d}"


def write_archive_metadata(path: Path, cases: list[DemoCase], start: int) -> None:
    """An ISIC Archive metadata export (``isic image download``'s metadata.csv) for the cases' images.

    Columns as isic-cli writes them (``isic_id,attribution,copyright_license``, then the sorted
    metadata keys), the hierarchical diagnosis, ``anatom_site_general``, ``age_approx``, ``sex``.
    """
    rows = [ARCHIVE_COLUMNS]
    for case in cases:
        d1, d2, d3 = ARCHIVE_DIAGNOSIS[case.diagnosis]
        if case.diagnosis == "mel" and case.index % 2:
            d3 = "Melanoma in situ"
        confirm = CONFIRM_TYPE[HAM_DX_TYPE.get(case.diagnosis, "consensus")]
        site = ARCHIVE_SITE.get(case.site, case.site)
        rows.append(
            f"{isic_id(case.index, start)},lesionaug demo-data,CC-0,{case.age},{site},{d1},"
            f'"{d2}",{d3},{confirm},dermoscopic,IL_{case.lesion:07d},{case.sex}'
        )
    write_text(path, rows)


def write_isic2018(
    root: Path, cases: list[DemoCase], size: int, seed: int, progress: Progress, style: str
) -> None:
    """Task 1 images + masks, Task 2 attribute masks (five per image) and Task 3 CSVs, per split.

    As in the real release the Task 3 ground truth and lesion groupings name other images (ids from
    ISIC_0024306, HAM10000's): they label no Task 1 image. The diagnoses of the Task 1 images come
    from an external table (``write_archive_metadata``, joined with ``--labels``).
    """
    task3: dict[str, list[str]] = {s: ["image," + ",".join(TASK3_CODES)] for s in ISIC_WORDS}
    groupings = ["image,lesion_id,diagnosis_confirm_type"]
    for split, word in ISIC_WORDS.items():
        for folder in (f"ISIC2018_Task1-2_{word}_Input", f"ISIC2018_Task1_{word}_GroundTruth", _task2_dir(word)):
            write_notices(root / folder, seed, style)
    for case in cases:
        image_id = isic_id(case.index)
        word = ISIC_WORDS[case.split]
        rgb, mask, regions = render_case(case, size, seed, style)
        save_image(root / f"ISIC2018_Task1-2_{word}_Input" / f"{image_id}.jpg", rgb)
        save_mask(root / f"ISIC2018_Task1_{word}_GroundTruth" / f"{image_id}_segmentation.png", mask)
        for attribute in TASK2_ATTRIBUTES:
            region = regions.get(attribute, np.zeros_like(mask))
            save_mask(root / _task2_dir(word) / f"{image_id}_attribute_{attribute}.png", region)
        hot = ",".join("1.0" if code.lower() == case.diagnosis else "0.0" for code in TASK3_CODES)
        task3_id = isic_id(case.index, TASK3_FIRST_ID)
        task3[case.split].append(f"{task3_id},{hot}")
        dx_type = HAM_DX_TYPE.get(case.diagnosis, "consensus")
        groupings.append(f"{task3_id},HAM_{case.lesion:07d},{CONFIRM_TYPE[dx_type]}")
        progress()
    for split, word in ISIC_WORDS.items():
        write_text(root / f"ISIC2018_Task3_{word}_GroundTruth" / f"ISIC2018_Task3_{word}_GroundTruth.csv", task3[split])
    write_text(root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_LesionGroupings.csv", groupings)


def _task2_dir(word: str) -> str:
    return "ISIC2018_Task2_Training_GroundTruth_v3" if word == "Training" else f"ISIC2018_Task2_{word}_GroundTruth"


def superpixel_map(rng: np.random.Generator, size: int) -> np.ndarray:
    """Integer label map of roughly square superpixels (jittered-grid Voronoi cells)."""
    cell = max(6.0, size / 10)
    n = int(np.ceil(size / cell))
    centres = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1) + rng.uniform(0.2, 0.8, (n, n, 2))
    centres = centres.reshape(-1, 2) * cell
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    best = np.full((size, size), np.inf, np.float32)
    labels = np.zeros((size, size), np.int64)
    for i, (cy, cx) in enumerate(centres):
        d = (yy - cy) ** 2 + (xx - cx) ** 2
        closer = d < best
        best[closer] = d[closer]
        labels[closer] = i
    _, labels = np.unique(labels, return_inverse=True)  # consecutive labels 0..K-1
    return labels.reshape(size, size)


def features_json(labels: np.ndarray, regions: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, list[int]]:
    """ISIC 2017 Part 2: per attribute, 1 for each superpixel mostly inside its region (at least one)."""
    k = int(labels.max()) + 1
    counts = np.bincount(labels.ravel(), minlength=k)
    out = {}
    for name in names:
        region = regions.get(name)
        if region is None or not region.any():
            out[name] = [0] * k
            continue
        overlap = np.bincount(labels.ravel(), weights=region.ravel().astype(float), minlength=k) / counts
        flags = overlap >= 0.5
        flags[np.argmax(overlap)] = True
        out[name] = [int(f) for f in flags]
    return out


def write_isic2017(
    root: Path, cases: list[DemoCase], size: int, seed: int, progress: Progress, style: str
) -> None:
    """Data folders (images, superpixels, metadata CSV), Part 1 masks, Part 2 JSON, Part 3 CSV."""
    names = ("milia_like_cyst", "negative_network", "pigment_network", "streaks")
    part3 = {s: ["image_id,melanoma,seborrheic_keratosis"] for s in ISIC2017_WORDS}
    metadata = {s: ["image_id,age_approximate,sex"] for s in ISIC2017_WORDS}
    for word in ISIC2017_WORDS.values():
        write_notices(root / f"ISIC-2017_{word}_Data", seed, style)
        write_notices(root / f"ISIC-2017_{word}_Part1_GroundTruth", seed, style)
        write_notices(root / f"ISIC-2017_{word}_Part2_GroundTruth", seed, style)
    for case in cases:
        image_id = isic_id(case.index)
        word = ISIC2017_WORDS[case.split]
        rgb, mask, regions = render_case(case, size, seed, style)
        data = root / f"ISIC-2017_{word}_Data"
        save_image(data / f"{image_id}.jpg", rgb)
        labels = superpixel_map(np.random.default_rng([seed, case.index, 2017]), size)
        encoded = np.stack([labels & 255, (labels >> 8) & 255, (labels >> 16) & 255], -1).astype(np.uint8)
        save_image(data / f"{image_id}_superpixels.png", encoded)
        save_mask(root / f"ISIC-2017_{word}_Part1_GroundTruth" / f"{image_id}_segmentation.png", mask)
        features = features_json(labels, regions, names)
        path = root / f"ISIC-2017_{word}_Part2_GroundTruth" / f"{image_id}_features.json"
        path.write_text(json.dumps(features, sort_keys=True))
        mel, sk = float(case.diagnosis == "mel"), float(case.diagnosis == "sk")
        part3[case.split].append(f"{image_id},{mel},{sk}")
        age = "unknown" if case.index % 11 == 5 else str(case.age)
        metadata[case.split].append(f"{image_id},{age},{case.sex}")
        progress()
    for split, word in ISIC2017_WORDS.items():
        write_text(root / f"ISIC-2017_{word}_Part3_GroundTruth.csv", part3[split])
        write_text(root / f"ISIC-2017_{word}_Data" / f"ISIC-2017_{word}_Data_metadata.csv", metadata[split])


def write_ham10000(
    root: Path, cases: list[DemoCase], size: int, seed: int, progress: Progress, style: str
) -> None:
    """Images split over two parts, HAM10000_metadata.csv, Tschandl's segmentation masks."""
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    sources = ("vidir_modern", "rosendahl", "vienna_dias", "vidir_molemax")
    write_notices(root, seed, style)
    half = (len(cases) + 1) // 2
    for case in cases:
        image_id = isic_id(case.index, start=TASK3_FIRST_ID)
        part = 1 if case.index < half else 2
        rgb, mask, _ = render_case(case, size, seed, style)
        save_image(root / f"HAM10000_images_part_{part}" / f"{image_id}.jpg", rgb)
        save_mask(root / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png", mask)
        dx_type = HAM_DX_TYPE.get(case.diagnosis, "consensus")
        rows.append(
            f"HAM_{case.lesion:07d},{image_id},{case.diagnosis},{dx_type},{float(case.age)},{case.sex},"
            f"{case.site},{sources[case.lesion % len(sources)]}"
        )
        progress()
    write_text(root / "HAM10000_metadata.csv", rows)


PH2_HEADER = (
    "|| Name   || Histological Diagnosis || Clinical Diagnosis || Asymmetry || Pigment Network || Dots/Globules "
    "|| Streaks || Regression Areas || Blue-Whitish Veil || Colors ||"
)
PH2_LEGEND = [
    "",
    "Legend:",
    "Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma",
    "Asymmetry: 0 - Fully Symmetric; 1 - Symetric in 1 axe; 2 - Fully Asymmetric",
    "Pigment Network, Dots/Globules: A - Absent; T - Typical; AT - Atypical",
    "Streaks, Regression Areas, Blue-Whitish Veil: A - Absent; P - Present",
    "Colors: 1 - White; 2 - Red; 3 - Light-Brown; 4 - Dark-Brown; 5 - Blue-Gray; 6 - Black",
]


def ph2_row(case: DemoCase, name: str) -> str:
    """One ``||``-separated row; histology left empty except for melanomas, as in most real rows."""
    clinical = {"common_nevus": 0, "atypical_nevus": 1, "mel": 2}[case.diagnosis]
    attrs = set(case.attributes)
    network = "AT" if "atypical_pigment_network" in attrs else "T" if "pigment_network" in attrs else "A"
    dots = ("AT" if clinical else "T") if "dots_globules" in attrs else "A"
    colours = {0: "3 4", 1: "3 4", 2: "4 5 6"}[clinical]
    cells = [
        name,
        "Melanoma" if clinical == 2 else "",
        str(clinical),
        str(min(2, clinical + (case.index % 2))),
        network,
        dots,
        "P" if "streaks" in attrs else "A",
        "P" if "regression" in attrs else "A",
        "P" if "blue_whitish_veil" in attrs else "A",
        colours,
    ]
    return "||" + "||".join(f" {c} " for c in cells) + "||"


def write_ph2(
    root: Path, cases: list[DemoCase], size: int, seed: int, progress: Progress, style: str
) -> None:
    """PH2Dataset/PH2 Dataset images/IMD###/{IMD###_Dermoscopic_Image, IMD###_lesion, IMD###_roi}/ (BMP)."""
    base = root / "PH2Dataset"
    images = base / "PH2 Dataset images"
    lines = [PH2_HEADER]
    number = 2
    for case in cases:
        name = f"IMD{number:03d}"
        number += 1 + case.index % 3  # case numbers have gaps, as in the real set
        rgb, mask, regions = render_case(case, size, seed, style)
        save_image(images / name / f"{name}_Dermoscopic_Image" / f"{name}.bmp", rgb)
        save_mask(images / name / f"{name}_lesion" / f"{name}_lesion.bmp", mask)
        for k, (attribute, region) in enumerate(sorted(regions.items())[:2]):
            colour = 5 if attribute in ("blue_whitish_veil", "regression") else 4
            save_mask(images / name / f"{name}_roi" / f"{name}_R{k + 1}_Label{colour}.bmp", region)
        lines.append(ph2_row(case, name))
        progress()
    write_text(base / "PH2_dataset.txt", lines + PH2_LEGEND)


def write_paired(
    root: Path, cases: list[DemoCase], size: int, seed: int, progress: Progress, style: str
) -> None:
    """{train,val,test}/{images,masks}/ PNGs with the same stem, and labels.csv at the top."""
    header = "image,diagnosis," + ",".join(TASK2_ATTRIBUTES) + ",age,sex,site"
    rows = [header]
    for case in cases:
        stem = f"lesion_{case.index:05d}"
        rgb, mask, _ = render_case(case, size, seed, style)
        save_image(root / case.split / "images" / f"{stem}.png", rgb)
        save_mask(root / case.split / "masks" / f"{stem}.png", mask)
        flags = ",".join("1" if a in case.attributes else "0" for a in TASK2_ATTRIBUTES)
        rows.append(f"{stem}.png,{case.diagnosis},{flags},{case.age},{case.sex},{case.site}")
        progress()
    write_text(root / "labels.csv", rows)
    write_notices(root, seed, style)


WRITERS: dict[str, Callable[[Path, list[DemoCase], int, int, Progress], None]] = {
    "isic2018": write_isic2018,
    "isic2017": write_isic2017,
    "ham10000": write_ham10000,
    "ph2": write_ph2,
    "paired": write_paired,
}
