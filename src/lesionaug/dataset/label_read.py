"""Label files of every layout read into ``Labels``: CSV rows, headerless ISIC 2016 rows, PH2's text table.

One function, ``labels_from_row``, understands every column vocabulary in DATASETS.md (HAM10000 ``dx``,
one-hot Task 3 / 2019 columns, ISIC 2017 melanoma / seborrheic_keratosis, the archive's
``diagnosis_1..5`` and legacy ``diagnosis``, sites from ``localization``, ``anatom_site_1`` and
``anatom_site_general``), so a generic labels CSV may use any of them.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from lesionaug.dataset.label_columns import AGE_COLUMNS, ID_COLUMNS, SITE_COLUMNS
from lesionaug.dataset.labels import (
    ATTRIBUTES,
    DIAGNOSIS_ALIASES,
    Labels,
    diagnosis_code,
)
from lesionaug.errors import DatasetError

ONE_HOT_CODES = ("mel", "nv", "bcc", "akiec", "ak", "bkl", "df", "vasc", "scc", "unk")
_EXTRA_COLUMNS = (
    "lesion_id",
    "dx_type",
    "diagnosis_confirm_type",
    "benign_malignant",
    "copyright_license",
    "melanocytic",
    "fitzpatrick_skin_type",
    "image_type",
    "dermoscopic_type",
)
_MISSING = {"", "unknown", "nan", "none", "na", "n/a", "null", "?"}
_TRUE = {"1", "1.0", "true", "yes", "y", "present", "p", "x"}


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV (or tab-separated) file; header keys lower-cased and stripped."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read label file ({exc.strerror})", path=path, fix="fix its permissions") from None
    first = text.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], []
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        rows.append({k: (values[i].strip() if i < len(values) else "") for i, k in enumerate(header)})
    return header, rows


def read_headerless_rows(path: Path) -> list[list[str]]:
    """Rows of a CSV without a header (ISIC 2016 Part 3 ground truth)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read label file ({exc.strerror})", path=path, fix="fix its permissions") from None
    return [[v.strip() for v in row] for row in csv.reader(text.splitlines()) if any(v.strip() for v in row)]


def id_column(header: list[str]) -> str | None:
    """The column that names the image, by the names DATASETS.md lists (first match)."""
    for name in ID_COLUMNS:
        if name in header:
            return name
    return None


def clean_id(value: str) -> str:
    """An image id from a label cell: the file name's stem when the cell holds a file name."""
    value = value.strip().replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = value.rpartition(".")
    return stem if dot and ext.lower() in {"jpg", "jpeg", "png", "bmp", "tif", "tiff", "gif", "webp"} else value


def _missing(value: str | None) -> bool:
    return value is None or value.strip().lower() in _MISSING


def _diagnosis(text: str | None) -> str | None:
    """A code from a code or free text; free-text names go through the aliases first ('nevus' -> 'nv')."""
    if _missing(text):
        return None
    key = re.sub(r"\s+", " ", text.replace(",", " ")).strip().lower()
    return DIAGNOSIS_ALIASES.get(key) or diagnosis_code(key)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def diagnosis_from_row(row: dict[str, str]) -> str | None:
    """The diagnosis code a row states, trying each vocabulary from most to least specific."""
    if not _missing(row.get("dx")):
        return _diagnosis(row["dx"])
    hot = [(v, c) for c in ONE_HOT_CODES if c in row and (v := _float(row[c])) is not None]
    if len(hot) >= 2:
        value, code = max(hot)
        return code if value >= 0.5 else None
    if "melanoma" in row and "seborrheic_keratosis" in row:
        if (_float(row["melanoma"]) or 0) >= 0.5:
            return "mel"
        if (_float(row["seborrheic_keratosis"]) or 0) >= 0.5:
            return "sk"
        return "nevus" if _float(row["melanoma"]) is not None else None
    for key in ("diagnosis_5", "diagnosis_4", "diagnosis_3", "diagnosis_2", "diagnosis_1"):
        code = _diagnosis(row.get(key))
        if code:
            return code
    for key in ("diagnosis", "label", "class", "lesion_type", "benign_malignant"):
        code = _diagnosis(row.get(key))
        if code:
            return code
    return None


def normalise_site(text: str | None) -> str | None:
    """'posterior torso', 'head or neck', 'lower extremity', ... (lower case, '/' read as 'or')."""
    if _missing(text):
        return None
    site = re.sub(r"\s+", " ", text.strip().lower().replace("_", " ").replace("/", " or "))
    return site or None


def parse_age(text: str | None) -> int | None:
    if _missing(text):
        return None
    match = re.match(r"\s*(\d+(?:\.\d*)?)", text)
    return int(float(match.group(1))) if match else None


def parse_sex(text: str | None) -> str | None:
    if _missing(text):
        return None
    low = text.strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(low)


def labels_from_row(row: dict[str, str]) -> Labels:
    """Normalised labels of one label-file row (keys lower-case)."""
    attributes = tuple(a for a in ATTRIBUTES if a in row and row[a].strip().lower() in _TRUE)
    site = next((normalise_site(row[c]) for c in SITE_COLUMNS if not _missing(row.get(c))), None)
    age = next((parse_age(row[c]) for c in AGE_COLUMNS if not _missing(row.get(c))), None)
    sex = parse_sex(row.get("sex") or row.get("gender"))
    extra = tuple((k, row[k]) for k in _EXTRA_COLUMNS if not _missing(row.get(k)))
    return Labels(diagnosis=diagnosis_from_row(row), attributes=attributes, site=site, age=age, sex=sex, extra=extra)


def labels_by_id(path: Path) -> tuple[dict[str, Labels], dict[str, dict[str, str]], str | None, list[str]]:
    """Labels of a headed label CSV keyed by image id; also the raw rows, the id column and the header."""
    header, rows = read_csv_rows(path)
    key = id_column(header)
    if key is None:
        return {}, {}, None, header
    labels: dict[str, Labels] = {}
    raw: dict[str, dict[str, str]] = {}
    for row in rows:
        image_id = clean_id(row.get(key, ""))
        if image_id:
            labels[image_id] = labels_from_row(row)
            raw[image_id] = row
    return labels, raw, key, header


def isic2016_labels(path: Path) -> dict[str, Labels]:
    """Headerless ``ISIC_0000000,benign`` (training) or ``ISIC_0000000,1.0`` (test) rows."""
    out: dict[str, Labels] = {}
    for row in read_headerless_rows(path):
        if len(row) < 2:
            continue
        value = row[1].lower()
        number = _float(value)
        if not re.match(r"(?i)isic_\d+", row[0]) and number is None and value not in ("benign", "malignant"):
            continue  # a header or stray line; other ids with a 2016 label are pairs added by augment
        code = ("malignant" if number >= 0.5 else "benign") if number is not None else diagnosis_code(value)
        out[clean_id(row[0])] = Labels(diagnosis=code)
    return out


PH2_COLOURS = {"1": "white", "2": "red", "3": "light-brown", "4": "dark-brown", "5": "blue-gray", "6": "black"}
PH2_CLINICAL = {"0": "common_nevus", "1": "atypical_nevus", "2": "mel"}


def ph2_labels(path: Path) -> dict[str, tuple[Labels, dict[str, str]]]:
    """Rows of ``PH2_dataset.txt``: split on ``||`` keeping empty cells; field [3] is the diagnosis."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read label file ({exc.strerror})", path=path, fix="fix its permissions") from None
    out: dict[str, tuple[Labels, dict[str, str]]] = {}
    names = (
        "name",
        "histology",
        "clinical",
        "asymmetry",
        "pigment_network",
        "dots_globules",
        "streaks",
        "regression",
        "blue_whitish_veil",
        "colours",
    )
    for line in lines:
        cells = [c.strip() for c in line.split("||")]
        if len(cells) < 5 or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", cells[1]) or cells[1].lower() == "name":
            continue
        row = {n: (cells[i + 1] if i + 1 < len(cells) else "") for i, n in enumerate(names)}
        attrs = []
        if row["pigment_network"].upper() == "AT":
            attrs.append("atypical_pigment_network")
        elif row["pigment_network"].upper() == "T":
            attrs.append("pigment_network")
        if row["dots_globules"].upper() in ("T", "AT"):
            attrs.append("dots_globules")
        for key in ("streaks", "regression", "blue_whitish_veil"):
            if row[key].upper() == "P":
                attrs.append(key)
        colours = [PH2_COLOURS[c] for c in row["colours"].split() if c in PH2_COLOURS]
        extra = [("asymmetry", row["asymmetry"])] if row["asymmetry"] else []
        if colours:
            extra.append(("colours", ",".join(colours)))
        if row["histology"]:
            extra.append(("histology", row["histology"]))
        labels = Labels(diagnosis=PH2_CLINICAL.get(row["clinical"]), attributes=tuple(attrs), extra=tuple(extra))
        out[row["name"]] = (labels, row)
    return out
