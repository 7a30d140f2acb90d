"""Writers for every dataset layout in DATASETS.md, tiny and with the real traps.

Each ``write_*`` function builds a layout under a folder and returns ``Expected``: the layout name,
the ids per split ('*' when the split is seeded) and the labels each sample must get. Traps written:
superpixels beside ISIC 2017 images, Part 2 features JSON, JPEG / 0-1 / palette / RGB / 1-bit / BMP
masks, mixed-case mask suffixes, PH2's space in a folder name, doubly nested folders,
ATTRIBUTION.txt / LICENSE.txt, ``__MACOSX`` and ``._*`` junk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from file_traps import write_xlsx
from PIL import Image

SIZE = (24, 18)  # width, height of fixture images


@dataclass
class Expected:
    layout: str
    splits: dict[str, set[str]]  # split -> ids; key "*" when splits are seeded
    labels: dict[str, dict] = field(default_factory=dict)  # id -> Labels.to_dict() subset to check

    @property
    def ids(self) -> set[str]:
        return set().union(*self.splits.values())


def isic_id(k: int) -> str:
    return f"ISIC_{k:07d}"


def blob(size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    """A bool (H, W) ellipse, different per seed."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = w / 2 + rng.uniform(-2, 2), h / 2 + rng.uniform(-2, 2)
    rx, ry = w * rng.uniform(0.2, 0.35), h * rng.uniform(0.2, 0.35)
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def write_image(path: Path, size: tuple[int, int] = SIZE, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1000)
    arr = rng.integers(60, 200, size=(size[1], size[0], 3), dtype=np.uint8)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}.get(path.suffix.lower(), "PNG")
    Image.fromarray(arr).save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def write_mask(path: Path, mask: np.ndarray, encoding: str = "L255") -> Path:
    """Write a bool mask in one of the encodings seen in mirrors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = mask.astype(np.uint8)
    if encoding == "L255":
        Image.fromarray(m * 255, "L").save(path, format="PNG")
    elif encoding == "01":
        Image.fromarray(m, "L").save(path, format="PNG")
    elif encoding == "palette":
        im = Image.fromarray(m, "P")
        im.putpalette([0, 0, 0, 255, 255, 255] + [0] * (254 * 3))
        im.save(path, format="PNG")
    elif encoding == "rgb":
        Image.fromarray(np.repeat(m[..., None] * 255, 3, axis=2), "RGB").save(path, format="PNG")
    elif encoding == "1bit":
        Image.fromarray(m * 255, "L").convert("1").save(path, format="PNG")
    elif encoding == "jpeg":
        Image.fromarray(m * 255, "L").save(path, format="JPEG", quality=75)
    elif encoding == "bmp":
        Image.fromarray(m * 255, "L").save(path, format="BMP")
    else:
        raise ValueError(encoding)
    return path


def write_junk(folder: Path) -> None:
    """The extra files real downloads carry, which must never become samples."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ATTRIBUTION.txt").write_text("Images courtesy of the ISIC Archive.\n")
    (folder / "LICENSE.txt").write_text("CC-BY-NC\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "._ISIC_0000000.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    macosx = folder.parent / "__MACOSX" / folder.name
    macosx.mkdir(parents=True, exist_ok=True)
    (macosx / "._ISIC_0000000.jpg").write_bytes(b"\0\5\26\7")


def write_isic2018(root: Path, n: dict[str, int] | None = None, nest: bool = True, task3: bool = True) -> Expected:
    """Task 1 folders for each split (Training doubly nested), Task 2 attribute masks, Task 3 CSV."""
    n = n or {"Training": 4, "Validation": 2, "Test": 2}
    split_of = {"Training": "train", "Validation": "val", "Test": "test"}
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    exp = Expected("isic2018_task1", {})
    rows = []
    k = 0
    for word, count in n.items():
        images = root / f"ISIC2018_Task1-2_{word}_Input"
        if nest and word == "Training":
            images = images / images.name
        masks = root / f"ISIC2018_Task1_{word}_GroundTruth"
        write_junk(images)
        ids = set()
        for _ in range(count):
            image_id = isic_id(k)
            write_image(images / f"{image_id}.jpg", seed=k)
            write_mask(masks / f"{image_id}_segmentation.png", blob(seed=k))
            code = codes[k % len(codes)]
            rows.append((image_id, code))
            exp.labels[image_id] = {"diagnosis": code.lower()} if task3 else {}
            if word == "Training":
                attrs = []
                for a, attribute in enumerate(
                    ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")
                ):
                    present = (k + a) % 3 == 0
                    attr_dir = root / "ISIC2018_Task2_Training_GroundTruth_v3"
                    write_mask(attr_dir / f"{image_id}_attribute_{attribute}.png", blob(seed=k) & present)
                    if present:
                        attrs.append(attribute)
                exp.labels[image_id]["attributes"] = sorted(attrs)
            ids.add(image_id)
            k += 1
        exp.splits[split_of[word]] = ids
    if task3:
        gt = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
        gt.parent.mkdir(parents=True, exist_ok=True)
        lines = ["image," + ",".join(codes)]
        lines += [f"{i}," + ",".join("1.0" if c == code else "0.0" for c in codes) for i, code in rows]
        gt.write_text("\n".join(lines) + "\n")
    return exp


def write_isic2017(root: Path, n: dict[str, int] | None = None) -> Expected:
    """Data folders with superpixels and metadata CSV, Part 1 masks, Part 2 JSON, Part 3 CSV."""
    n = n or {"Training": 4, "Validation": 1, "Test_v2": 2}
    split_of = {"Training": "train", "Validation": "val", "Test_v2": "test"}
    exp = Expected("isic2017", {})
    k = 0
    for word, count in n.items():
        data = root / f"ISIC-2017_{word}_Data"
        write_junk(data)
        part3 = ["image_id,melanoma,seborrheic_keratosis"]
        meta = ["image_id,age_approximate,sex"]
        ids = set()
        for _ in range(count):
            image_id = isic_id(k)
            write_image(data / f"{image_id}.jpg", seed=k)
            # Superpixels: 4 vertical bands labelled 0..3, RGB-encoded label map.
            label_map = (np.arange(SIZE[0])[None, :].repeat(SIZE[1], 0) * 4 // SIZE[0]).astype(np.uint8)
            rgb = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
            rgb[..., 0] = label_map
            Image.fromarray(rgb).save(data / f"{image_id}_superpixels.png")
            write_mask(root / f"ISIC-2017_{word}_Part1_GroundTruth" / f"{image_id}_segmentation.png", blob(seed=k))
            features = {
                "pigment_network": [1 if k % 2 == 0 else 0, 0, 0, 0],
                "negative_network": [0, 0, 0, 0],
                "streaks": [0, 0, 1 if k % 3 == 0 else 0, 0],
                "milia_like_cyst": [0, 0, 0, 0],
            }
            part2 = root / f"ISIC-2017_{word}_Part2_GroundTruth" / f"{image_id}_features.json"
            part2.parent.mkdir(parents=True, exist_ok=True)
            part2.write_text(json.dumps(features))
            mel, sk = (1.0, 0.0) if k % 3 == 0 else (0.0, 1.0) if k % 3 == 1 else (0.0, 0.0)
            part3.append(f"{image_id},{mel},{sk}")
            age, sex = ("unknown", "unknown") if k == 1 else (str(30 + 5 * k), "female" if k % 2 else "male")
            meta.append(f"{image_id},{age},{sex}")
            attrs = sorted(a for a, v in features.items() if any(v))
            label = {"diagnosis": ["mel", "sk", "nevus"][k % 3], "attributes": attrs}
            if age != "unknown":
                label.update(age=int(age), sex=sex)
            exp.labels[image_id] = label
            ids.add(image_id)
            k += 1
        (root / f"ISIC-2017_{word}_Part3_GroundTruth.csv").write_text("\n".join(part3) + "\n")
        (data / f"ISIC-2017_{word}_Data_metadata.csv").write_text("\n".join(meta) + "\n")
        exp.splits[split_of[word]] = ids
    return exp


def write_isic2016(root: Path, part: str = "1") -> Expected:
    """Part 1 (separate mask folder, `_Segmentation.png`) or Part 3B (masks beside images)."""
    exp = Expected("isic2016", {"train": set(), "test": set()})
    for k in range(5):
        image_id = isic_id(k)
        word, split = ("Training", "train") if k < 3 else ("Test", "test")
        if part == "1":
            images = root / f"ISBI2016_ISIC_Part1_{word}_Data"
            masks = root / f"ISBI2016_ISIC_Part1_{word}_GroundTruth"
        else:
            images = masks = root / f"ISBI2016_ISIC_Part3B_{word}_Data"
        write_image(images / f"{image_id}.jpg", seed=k)
        write_mask(masks / f"{image_id}_Segmentation.png", blob(seed=k))
        exp.splits[split].add(image_id)
        exp.labels[image_id] = {"diagnosis": "malignant" if k % 2 else "benign"}
    csv_part = "Part3" if part == "1" else "Part3B"
    (root / f"ISBI2016_ISIC_{csv_part}_Training_GroundTruth.csv").write_text(
        "".join(f"{isic_id(k)},{'malignant' if k % 2 else 'benign'}\n" for k in range(3))
    )
    (root / f"ISBI2016_ISIC_{csv_part}_Test_GroundTruth.csv").write_text(
        "".join(f"{isic_id(k)},{'1.0' if k % 2 else '0.0'}\n" for k in range(3, 5))
    )
    return exp


HAM_DX = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def _ham_rows(ids: list[str]) -> tuple[list[str], dict[str, dict]]:
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    labels = {}
    for k, image_id in enumerate(ids):
        dx = HAM_DX[k % len(HAM_DX)]
        sex = ["male", "female", "unknown"][k % 3]
        age = "" if k == 2 else f"{40 + 5 * k}.0"
        lines.append(f"HAM_{k // 2:07d},{image_id},{dx},histo,{age},{sex},lower extremity,vidir_modern")
        label = {"diagnosis": dx, "site": "lower extremity"}
        if age:
            label["age"] = 40 + 5 * k
        if sex != "unknown":
            label["sex"] = sex
        labels[image_id] = label
    return lines, labels


def write_ham10000(root: Path, n: int = 8, masks: bool = True, jpeg_masks: bool = True) -> Expected:
    """Two image parts, metadata CSV with the Dataverse `dataset` column, Tschandl masks (some JPEG)."""
    ids = [isic_id(24306 + k) for k in range(n)]
    for k, image_id in enumerate(ids):
        part = 1 if k < n // 2 else 2
        write_image(root / f"HAM10000_images_part_{part}" / f"{image_id}.jpg", size=(24, 18), seed=k)
        if masks:
            mask_dir = root / "HAM10000_segmentations_lesion_tschandl" / "HAM10000_segmentations_lesion_tschandl"
            if jpeg_masks and k % 2:
                write_mask(mask_dir / f"{image_id}_segmentation.jpg", blob(seed=k), "jpeg")
            else:
                write_mask(mask_dir / f"{image_id}_segmentation.png", blob(seed=k))
    lines, labels = _ham_rows(ids)
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    return Expected("ham10000", {"*": set(ids)}, labels)


def write_isic2018_task3(root: Path, ham_masks: bool = True) -> Expected:
    """Task 3 images and one-hot CSV, with Tschandl's masks beside them."""
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    exp = Expected("isic2018_task3", {"train": set(), "val": set()})
    lines = ["image," + ",".join(codes)]
    for k in range(6):
        image_id = isic_id(24306 + k)
        word, split = ("Training", "train") if k < 4 else ("Validation", "val")
        write_image(root / f"ISIC2018_Task3_{word}_Input" / f"{image_id}.jpg", seed=k)
        if ham_masks:
            write_mask(root / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png", blob(seed=k))
        lines.append(f"{image_id}," + ",".join("1.0" if j == k % 7 else "0.0" for j in range(7)))
        exp.splits[split].add(image_id)
        exp.labels[image_id] = {"diagnosis": codes[k % 7].lower()}
    gt = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    gt.parent.mkdir(parents=True)
    gt.write_text("\n".join(lines) + "\n")
    return exp


def ph2_line(
    case: str,
    clinical: int,
    network: str = "T",
    dots: str = "A",
    streaks: str = "A",
    histology: str = "",
    colours: str = "3 4",
) -> str:
    cells = [case, histology, str(clinical), "0", network, dots, streaks, "A", "A", colours]
    return "||" + "||".join(f" {c} " for c in cells) + "||"


def write_ph2(root: Path, n: int = 5, nest: bool = True) -> Expected:
    """PH2Dataset/PH2 Dataset images/IMD###/... with BMP images and masks, txt with empty cells."""
    base = root / "PH2Dataset" / "PH2Dataset" if nest else root / "PH2Dataset"
    cases = [f"IMD{k:03d}" for k in (2, 3, 8, 9, 10, 14, 15)[:n]]
    header = (
        "|| Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry || Pigment Network || "
        "Dots/Globules || Streaks || Regression Areas || Blue-Whitish Veil || Colors ||"
    )
    lines = [header]
    exp = Expected("ph2", {"*": set(cases)})
    for k, case in enumerate(cases):
        folder = base / "PH2 Dataset images" / case
        write_image(folder / f"{case}_Dermoscopic_Image" / f"{case}.bmp", seed=k)
        write_mask(folder / f"{case}_lesion" / f"{case}_lesion.bmp", blob(seed=k), "bmp")
        if k == 0:
            write_mask(folder / f"{case}_roi" / f"{case}_R1_Label4.bmp", blob(seed=k), "bmp")
        clinical = k % 3
        network = "AT" if clinical == 2 else "T"
        dots = "AT" if k % 2 else "A"
        lines.append(
            ph2_line(case, clinical, network, dots, "P" if clinical == 2 else "A", "Melanoma" if clinical == 2 else "")
        )
        attrs = ["atypical_pigment_network" if network == "AT" else "pigment_network"]
        if dots != "A":
            attrs.append("dots_globules")
        if clinical == 2:
            attrs.append("streaks")
        exp.labels[case] = {"diagnosis": ["common_nevus", "atypical_nevus", "mel"][clinical], "attributes": attrs}
    lines += ["", "Legend: Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma"]
    (base / "PH2_dataset.txt").write_text("\n".join(lines) + "\n")
    return exp


def write_isic_archive(root: Path, n: int = 5, legacy: bool = False, masks_dir: Path | None = None) -> Expected:
    """Flat `isic image download` output; masks (0/1 PNG) written to ``masks_dir`` if given."""
    exp = Expected("isic_archive", {"*": set()})
    if legacy:
        header = "isic_id,attribution,copyright_license,age_approx,anatom_site_general,diagnosis,sex"
    else:
        header = (
            "isic_id,attribution,copyright_license,age_approx,anatom_site_1,diagnosis_1,diagnosis_2,diagnosis_3,sex"
        )
    lines = [header]
    for k in range(n):
        image_id = isic_id(100 + k)
        write_image(root / f"{image_id}.jpg", seed=k)
        if masks_dir is not None:
            write_mask(masks_dir / f"{image_id}_mask.png", blob(seed=k), "01")
        if legacy:
            diag, code = ("melanoma", "mel") if k % 2 else ("nevus", "nv")
            lines.append(f"{image_id},Anonymous,CC-BY,{35 + 5 * k},posterior torso,{diag},female")
            exp.labels[image_id] = {"diagnosis": code, "site": "posterior torso", "age": 35 + 5 * k, "sex": "female"}
        else:
            if k % 2:
                d = "Malignant,Malignant melanocytic proliferations (Melanoma),Melanoma Invasive"
                code = "mel"
            else:
                d, code = "Benign,Benign melanocytic proliferations,Nevus", "nv"
            lines.append(f'{image_id},"Doe, J.",CC-BY-NC,{35 + 5 * k},Trunk,{d},male')
            exp.labels[image_id] = {"diagnosis": code, "site": "trunk", "age": 35 + 5 * k, "sex": "male"}
        exp.splits["*"].add(image_id)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    (root / "attribution.txt").write_text("Doe, J.\n")
    return exp


def write_paired_split(
    root: Path, encodings: tuple[str, ...] = ("L255", "01", "palette", "rgb", "1bit", "jpeg")
) -> Expected:
    """{train,val,test}/{images,masks} with one mask encoding per sample and a labels.csv at the top."""
    exp = Expected("paired_split", {"train": set(), "val": set(), "test": set()})
    lines = ["image,dx,age,sex,localization,pigment_network"]
    for k, encoding in enumerate(encodings):
        split = ["train", "train", "val", "test", "train", "test"][k % 6]
        stem = f"case_{k:03d}"
        write_image(root / split / "images" / f"{stem}.png", seed=k)
        ext = ".jpg" if encoding == "jpeg" else ".png"
        suffix = ["", "_mask", "_Segmentation", "_seg", "_MASK", "_gt"][k % 6]
        write_mask(root / split / "masks" / f"{stem}{suffix}{ext}", blob(seed=k), encoding)
        lines.append(f"{stem}.png,{'mel' if k % 2 else 'nv'},{50 + k},female,back,{k % 2}")
        exp.splits[split].add(stem)
        label = {"diagnosis": "mel" if k % 2 else "nv", "age": 50 + k, "sex": "female", "site": "back"}
        if k % 2:
            label["attributes"] = ["pigment_network"]
        exp.labels[stem] = label
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return exp


def write_paired(root: Path, n: int = 6, encoding: str = "L255", labels: bool = False) -> Expected:
    """images/ and masks/ side by side, doubly nested inside a Kaggle-style folder."""
    base = root / "lesions" / "lesions"
    exp = Expected("paired", {"*": set()})
    lines = ["image_id,diagnosis"]
    for k in range(n):
        stem = f"img{k:02d}"
        write_image(base / "images" / f"{stem}.jpg", seed=k)
        write_mask(base / "masks" / f"{stem}_segmentation.png", blob(seed=k), encoding)
        exp.splits["*"].add(stem)
        lines.append(f"{stem},{'melanoma' if k % 2 else 'nevus'}")
        exp.labels[stem] = {"diagnosis": "mel" if k % 2 else "nv"} if labels else {}
    if labels:
        (base / "labels.csv").write_text("\n".join(lines) + "\n")
    return exp


ALL_WRITERS = {
    "isic2018": write_isic2018,
    "isic2017": write_isic2017,
    "isic2016_part1": lambda root: write_isic2016(root, "1"),
    "isic2016_part3b": lambda root: write_isic2016(root, "3B"),
    "ham10000": write_ham10000,
    "isic2018_task3": write_isic2018_task3,
    "ph2": write_ph2,
    "isic_archive_legacy": lambda root: write_isic_archive(root, legacy=True, masks_dir=root / "masks"),
    "isic_archive": lambda root: write_isic_archive(root, masks_dir=root / "masks"),
    "paired_split": write_paired_split,
    "paired": lambda root: write_paired(root, labels=True),
}


def write_ph2_xlsx_only(root: Path) -> Expected:
    """PH2 with only PH2_dataset.xlsx (12 title rows, then the header), no .txt."""
    exp = write_ph2(root, n=3, nest=False)
    base = root / "PH2Dataset"
    (base / "PH2_dataset.txt").unlink()
    rows = [["PH2 Database"]] + [[""]] * 11
    rows.append(["Image Name", "Histological Diagnosis", "Common Nevus", "Atypical Nevus", "Melanoma"])
    rows += [["IMD002", "", "X", "", ""], ["IMD003", "", "", "X", ""], ["IMD008", "Melanoma", "", "", "X"]]
    write_xlsx(base / "PH2_dataset.xlsx", rows)
    exp.labels = {k: {"diagnosis": v["diagnosis"]} for k, v in exp.labels.items()}
    return exp
