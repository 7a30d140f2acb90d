"""External label tables (``--labels FILE``, repeatable), read into ``Labels`` keyed by image id.

A table is any CSV that names images in an id column; its format is told by its header:

    isic_archive            isic_id, diagnosis_1..5 (or the legacy flat diagnosis), anatom_site_*, sex, age_approx
    isic2019_ground_truth   image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK (one-hot)
    isic2019_metadata       image, age_approx, anatom_site_general, lesion_id, sex
    isic2018_task3          image, MEL, NV, BCC, AKIEC, BKL, DF, VASC (one-hot)
    isic2020                image_name, ..., diagnosis, benign_malignant, target
    isic2017_part3          image_id, melanoma, seborrheic_keratosis (both 0: nevus)
    isic2017_metadata       image_id, age_approximate, sex
    isic2016                no header: ISIC_0000000,benign (or 0.0 / 1.0)
    ham10000_metadata       lesion_id, image_id, dx, dx_type, age, sex, localization
    labels_csv              any other CSV with an id column (image, image_id, isic_id, image_name, ...)

Every vocabulary goes to the prompt vocabulary through ``label_read.labels_from_row`` and the
aliases in ``labels.DIAGNOSIS_ALIASES`` (the table in docs/label-tables.md). A value with no
equivalent there is counted in ``LabelTable.unknown_values`` and reported, never dropped silently.
``label_join`` joins the tables onto a layout's samples.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lesionaug.dataset.label_read import (
    ONE_HOT_CODES,
    clean_id,
    id_column,
    isic2016_labels,
    labels_from_row,
    parse_age,
    parse_sex,
    read_csv_rows,
)
from lesionaug.dataset.labels import Labels, diagnosis_code
from lesionaug.errors import DatasetError

HIERARCHY = ("diagnosis_5", "diagnosis_4", "diagnosis_3", "diagnosis_2", "diagnosis_1")
FREE_TEXT_DIAGNOSIS = ("dx", "diagnosis", "label", "class", "lesion_type")
_MISSING = {"", "unknown", "nan", "none", "na", "n/a", "null", "?"}
_ISIC2019_HOT = {"mel", "nv", "bcc", "ak", "bkl", "df", "vasc", "scc", "unk"}
_TASK3_HOT = {"mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"}


@dataclass(frozen=True)
class LabelTable:
    """One table's labels by image id, and what in it has no prompt equivalent."""

    path: Path
    format: str
    id_column: str
    labels: dict[str, Labels]
    n_rows: int
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> value -> rows

    def lookup(self, image_id: str) -> Labels | None:
        """The labels of an image id (exact, else case-insensitive)."""
        found = self.labels.get(image_id)
        if found is None:
            found = self._lower().get(image_id.lower())
        return found

    def _lower(self) -> dict[str, Labels]:
        cached = self.__dict__.get("_lower_ids")
        if cached is None:
            cached = {k.lower(): v for k, v in self.labels.items()}
            object.__setattr__(self, "_lower_ids", cached)
        return cached

    def unknown_summary(self, limit: int = 5) -> str:
        """'diagnosis_3 "Blue nevus" (2 rows), sex "other" (1 row)': the first ``limit`` unknown values."""
        items = [(n, col, value) for col, values in self.unknown_values.items() for value, n in values.items()]
        items.sort(key=lambda t: (-t[0], t[1], t[2]))
        text = ", ".join(f'{col} "{value}" ({n} row{"s" if n != 1 else ""})' for n, col, value in items[:limit])
        return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def table_format(header: list[str]) -> str:
    """The format of a headed table, from its columns (see the module docstring)."""
    columns = set(header)
    if "isic_id" in columns:
        return "isic_archive"
    if "image" in columns and _ISIC2019_HOT <= columns:
        return "isic2019_ground_truth"
    if "image" in columns and _TASK3_HOT <= columns:
        return "isic2018_task3"
    if "image_name" in columns and ({"target", "benign_malignant"} & columns):
        return "isic2020"
    if "image_id" in columns and {"melanoma", "seborrheic_keratosis"} <= columns:
        return "isic2017_part3"
    if "image_id" in columns and "dx" in columns:
        return "ham10000_metadata"
    if "image_id" in columns and "age_approximate" in columns:
        return "isic2017_metadata"
    if "image" in columns and "anatom_site_general" in columns:
        return "isic2019_metadata"
    return "labels_csv"


def _missing(value: str | None) -> bool:
    return value is None or value.strip().lower() in _MISSING


def unknown_cells(row: dict[str, str]) -> list[tuple[str, str]]:
    """(column, value) of the cells of a row whose value has no equivalent in the prompt vocabulary.

    For the hierarchical diagnosis only the deepest level given counts: when it has no
    equivalent, a shallower level ("Benign") may still give the code, and the deeper value is
    reported as the detail that was lost.
    """
    found: list[tuple[str, str]] = []
    deepest = next((key for key in HIERARCHY if not _missing(row.get(key))), None)
    if deepest is not None and diagnosis_code(_normalise(row[deepest])) is None:
        found.append((deepest, row[deepest]))
    for key in FREE_TEXT_DIAGNOSIS:
        if not _missing(row.get(key)) and diagnosis_code(_normalise(row[key])) is None:
            found.append((key, row[key]))
    for key in ONE_HOT_CODES:
        value = row.get(key)
        if value is not None and value.strip() and _number(value) is None:
            found.append((key, value))
    sex = row.get("sex") or row.get("gender")
    if not _missing(sex) and parse_sex(sex) is None:
        found.append(("sex", sex))
    for key in ("age", "age_approx", "age_approximate"):
        if not _missing(row.get(key)) and parse_age(row[key]) is None:
            found.append((key, row[key]))
    return found


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace(",", " ")).strip().lower()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_label_table(path: str | Path) -> LabelTable:
    """Read one label table; a missing, unreadable or id-less file is a ``DatasetError`` (exit 3)."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not found"
        raise DatasetError(
            f"label table is {what}", path=path, fix="pass a CSV file to --labels (an ISIC metadata or ground-truth CSV)"
        )
    header, rows = read_csv_rows(path)
    if header and re.fullmatch(r"(?i)isic_\d+", header[0].strip()):
        labels = isic2016_labels(path)  # the headerless ISIC 2016 Part 3 table
        return LabelTable(path, "isic2016", "(first column)", labels, len(labels))
    key = id_column(header)
    if key is None:
        raise DatasetError(
            f"label table has no image id column (its columns: {', '.join(header[:8]) or 'none'})",
            path=path,
            fix="use a CSV with one of the columns isic_id, image, image_id, image_name",
        )
    labels: dict[str, Labels] = {}
    unknown: dict[str, Counter] = {}
    for row in rows:
        image_id = clean_id(row.get(key, ""))
        if not image_id:
            continue
        labels[image_id] = labels_from_row(row)
        for column, value in unknown_cells(row):
            unknown.setdefault(column, Counter())[value.strip()] += 1
    if not labels:
        raise DatasetError("label table has no rows", path=path, fix="pass the table with its rows")
    return LabelTable(
        path=path,
        format=table_format(header),
        id_column=key,
        labels=labels,
        n_rows=len(rows),
        unknown_values={col: dict(values.most_common()) for col, values in sorted(unknown.items())},
    )


def read_label_tables(paths: list[str | Path] | tuple[str | Path, ...]) -> list[LabelTable]:
    """Every table of ``--labels``, in the order given; the same file twice is a usage mistake."""
    tables: list[LabelTable] = []
    seen: dict[Path, Path] = {}
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        if resolved in seen:
            raise DatasetError("label table given twice", path=path, fix="pass each --labels file once")
        seen[resolved] = Path(path)
        tables.append(read_label_table(path))
    return tables


__all__ = [
    "LabelTable",
    "read_label_table",
    "read_label_tables",
    "table_format",
    "unknown_cells",
]
