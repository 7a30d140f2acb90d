"""Label rows for synthetic pairs, in each layout's own label-file format.

A label file in the output is its original bytes (or only its header, with ``--synthetic-only``)
followed by one row per synthetic pair in job order, in the file's own dialect: its columns, its
line ending, and the value style of its existing rows (``1.0`` vs ``1``, codes vs names). The
original part is kept byte for byte, so a merge can rebuild the file from any shard.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from lesionaug.dataset.label_columns import AGE_COLUMNS, ID_COLUMNS, SITE_COLUMNS
from lesionaug.dataset.labels import ATTRIBUTES, DIAGNOSES, DIAGNOSIS_ALIASES, Labels

HEADERLESS_FORMATS = frozenset({"isic2016_csv", "ph2_txt"})
_MALIGNANT = frozenset({"malignant", "mel", "bcc", "scc", "akiec"})
_DIAGNOSIS_COLUMNS = ("diagnosis", "dx", "label", "class", "diagnosis_3")
_ONE_HOT_ALIASES = {"melanoma": "mel", "seborrheic_keratosis": "sk", "nevus": "nv"}


def line_ending(data: bytes) -> str:
    return "\r\n" if b"\r\n" in data[:4096] else "\n"


def _parse(data: bytes, delimiter: str = ",") -> list[list[str]]:
    text = data.decode("utf-8-sig", errors="replace")
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]


def header_part(data: bytes, fmt: str) -> bytes:
    """The header line of a label file (with its line ending), or b"" for headerless formats."""
    if fmt in HEADERLESS_FORMATS or not data:
        return b""
    end = data.find(b"\n")
    return data if end < 0 else data[: end + 1]


def _flag_style(rows: list[list[str]], column: int) -> tuple[str, str]:
    """("1.0", "0.0") or ("1", "0"): how the existing rows write a yes/no column."""
    for row in rows:
        if column < len(row) and row[column].strip():
            return ("1.0", "0.0") if "." in row[column] else ("1", "0")
    return ("1.0", "0.0")


def _uses_codes(rows: list[list[str]], column: int) -> bool:
    values = [row[column].strip() for row in rows if column < len(row) and row[column].strip()]
    return not values or all(v.lower() in DIAGNOSES for v in values)


def _cell(column: str, col_index: int, rows: list[list[str]], pair_id: str, labels: Labels, key: str) -> str:
    """The value of one column for a synthetic pair, inferred from the column's name and contents."""
    name = column.strip().lower()
    if (key and name == key.lower()) or (not key and name in ID_COLUMNS):
        return pair_id
    if name in AGE_COLUMNS:
        return "" if labels.age is None else str(labels.age)
    if name == "sex":
        return labels.sex or ""
    if name in SITE_COLUMNS:
        return labels.site or ""
    if name in _DIAGNOSIS_COLUMNS:
        if labels.diagnosis is None:
            return ""
        if _uses_codes(rows, col_index):
            return labels.diagnosis
        name = labels.diagnosis_name or ""
        # A readable name only where it reads back as the same code; the code always does.
        return name if DIAGNOSIS_ALIASES.get(name.lower()) == labels.diagnosis else labels.diagnosis
    if name in ATTRIBUTES:
        yes, no = _flag_style(rows, col_index)
        return yes if name in labels.attributes else no
    code = _ONE_HOT_ALIASES.get(name) or (name if name in DIAGNOSES else None)
    if code is not None:
        yes, no = _flag_style(rows, col_index)
        return yes if labels.diagnosis == code else no
    if name == "lesion_id":
        return pair_id
    if name == "dx_type":
        return "synthetic"
    if name == "dataset":
        return "lesionaug"
    return ""


def _isic2016_row(pair_id: str, labels: Labels, rows: list[list[str]]) -> list[str]:
    malignant = (labels.diagnosis or "") in _MALIGNANT
    numeric = any(len(r) > 1 and r[1].strip() in {"0.0", "1.0", "0", "1"} for r in rows)
    if numeric:
        return [pair_id, "1.0" if malignant else "0.0"]
    return [pair_id, "malignant" if malignant else "benign"]


def _ham_row(header: list[str], pair_id: str, labels: Labels) -> list[str]:
    values = {
        "lesion_id": pair_id,
        "image_id": pair_id,
        "dx": labels.diagnosis or "",
        "dx_type": "synthetic",
        "age": "" if labels.age is None else f"{float(labels.age):.1f}",
        "sex": labels.sex or "unknown",
        "localization": labels.site or "unknown",
        "dataset": "lesionaug",
    }
    return [values.get(col.strip().lower(), "") for col in header]


_PH2_CLINICAL = {"common_nevus": "0", "atypical_nevus": "1", "mel": "2"}
_PH2_COLOUR_CODES = {"white": "1", "red": "2", "light-brown": "3", "dark-brown": "4", "blue-gray": "5", "black": "6"}


def _ph2_line(pair_id: str, labels: Labels) -> str:
    """A PH2 table row: name, histology, clinical diagnosis, asymmetry, the criteria and the colours."""
    attrs, extra = set(labels.attributes), dict(labels.extra)
    network = "AT" if "atypical_pigment_network" in attrs else "T" if "pigment_network" in attrs else ""
    colours = " ".join(_PH2_COLOUR_CODES[c] for c in str(extra.get("colours", "")).split(",") if c in _PH2_COLOUR_CODES)
    values = [
        pair_id,
        str(extra.get("histology", "")),
        _PH2_CLINICAL.get(labels.diagnosis or "", ""),
        str(extra.get("asymmetry", "")),
        network,
        "T" if "dots_globules" in attrs else "A",
        "P" if "streaks" in attrs else "A",
        "P" if "regression" in attrs else "A",
        "P" if "blue_whitish_veil" in attrs else "A",
        colours,
    ]
    return "||" + "||".join(f" {v} " if v else "  " for v in values) + "||"


def insertion_point(fmt: str, base: bytes) -> int:
    """Where new rows go in ``base``: the end, except after PH2's last table row (before its legend)."""
    if fmt == "ph2_txt":
        end = 0
        for line in base.splitlines(keepends=True):
            if b"||" in line:
                at = base.find(line, end)
                end = at + len(line)
        return end if end else len(base)
    return len(base)


def render_rows(
    fmt: str, base: bytes, pairs: Iterable[tuple[str, Labels]], *, key: str = "", original: bytes | None = None
) -> bytes:
    """``base`` followed by one row per (id, labels), in ``fmt``'s dialect.

    ``original`` is the input's whole label file (it may differ from ``base`` with
    ``--synthetic-only``); its rows decide value styles and its header the columns.
    """
    original = base if original is None else original
    newline = line_ending(original)
    pairs = list(pairs)
    at = insertion_point(fmt, base)
    head, tail = base[:at], base[at:]
    prefix = head if (not head or head.endswith(b"\n")) else head + newline.encode()
    if fmt == "ph2_txt":
        text = "".join(_ph2_line(pid, labels) + newline for pid, labels in pairs)
        return prefix + text.encode("utf-8") + tail
    parsed = _parse(original)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    if fmt == "isic2016_csv":
        for pid, labels in pairs:
            writer.writerow(_isic2016_row(pid, labels, parsed))
        return prefix + buf.getvalue().encode("utf-8") + tail
    header, rows = (parsed[0], parsed[1:]) if parsed else ([key or "image"], [])
    for pid, labels in pairs:
        if fmt == "ham10000_metadata":
            writer.writerow(_ham_row(header, pid, labels))
        else:
            cells = [_cell(col, i, rows, pid, labels, key) for i, col in enumerate(header)]
            if fmt == "isic2017_metadata":  # the challenge files write missing values as "unknown"
                cells = [c if c or i == 0 else "unknown" for i, c in enumerate(cells)]
            writer.writerow(cells)
    return prefix + buf.getvalue().encode("utf-8") + tail
