"""Reader for PH2: one folder per case under ``PH2 Dataset images`` (note the space), BMP image and mask.

PH2Dataset/PH2 Dataset images/IMD003/IMD003_Dermoscopic_Image/IMD003.bmp
                                    /IMD003_lesion/IMD003_lesion.bmp
                                    /IMD003_roi/IMD003_R1_Label4.bmp
PH2Dataset/PH2_dataset.txt
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from lesionaug.dataset.label_read import PH2_CLINICAL, ph2_labels
from lesionaug.dataset.labels import Labels
from lesionaug.dataset.layouts.pairing import attach_labels, common_suffix
from lesionaug.dataset.layouts.records import (
    Candidate,
    LabelFile,
    LayoutRead,
    LayoutSpec,
    Problem,
)
from lesionaug.dataset.layouts.tree import Tree
from lesionaug.errors import DatasetError

_CASE = re.compile(r"IMD\d{3,}")


def detect_ph2(tree: Tree) -> bool:
    return bool(tree.find_dirs(r"PH2 Dataset images") or tree.find_dirs(r"IMD\d{3,}_Dermoscopic_Image", max_depth=6))


def _case_parent(tree: Tree) -> str:
    named = tree.find_dirs(r"PH2 Dataset images")
    if named:
        return tree.unwrap(named[0])
    first = tree.find_dirs(r"IMD\d{3,}_Dermoscopic_Image", max_depth=6)[0]
    return first.rsplit("/", 2)[0] if first.count("/") >= 2 else ""


def _is_case_folder(tree: Tree, parent: str, name: str) -> bool:
    """Any folder shaped like a PH2 case (``X/X_Dermoscopic_Image/``), e.g. pairs added by augment."""
    listing = tree.listings.get(f"{parent}/{name}" if parent else name)
    return listing is not None and f"{name}_Dermoscopic_Image" in listing.dirs


def read_ph2(tree: Tree) -> LayoutRead:
    problems: list[Problem] = []
    parent = _case_parent(tree)
    candidates: list[Candidate] = []
    for case in sorted(d for d in tree.listings[parent].dirs if _CASE.fullmatch(d) or _is_case_folder(tree, parent, d)):
        case_rel = f"{parent}/{case}" if parent else case
        images = [p for p in tree.image_files(f"{case_rel}/{case}_Dermoscopic_Image") if p.stem == case]
        masks = [p for p in tree.image_files(f"{case_rel}/{case}_lesion") if p.stem.lower() == f"{case}_lesion".lower()]
        if not images:
            if masks:
                problems.append(
                    Problem("orphan_mask", str(masks[0]), "mask has no dermoscopic image in its case folder")
                )
            continue
        c = Candidate(id=case, image=images[0], mask=masks[0] if masks else None, split=None)
        rois = tree.image_files(f"{case_rel}/{case}_roi")
        if rois:
            c.source["roi"] = [str(p) for p in rois]
        candidates.append(c)
    label_files = []
    texts = tree.find_files(r"PH2_dataset\.txt", max_depth=6)
    sheets = tree.find_files(r"PH2_dataset\.xlsx", max_depth=6)
    if texts or sheets:
        rel, fmt = (texts[0], "ph2_txt") if texts else (sheets[0], "ph2_xlsx")
        rows = ph2_labels(tree.path(rel)) if texts else ph2_xlsx_labels(tree.path(rel))
        label_files.append(LabelFile(rel, fmt, "name"))
        attach_labels(candidates, {k: v[0] for k, v in rows.items()}, tree.path(rel), problems)
        for c in candidates:
            if c.id in rows:
                c.source["label_row"] = rows[c.id][1]
    ext = common_suffix([c.image for c in candidates], ".bmp")
    prefix = f"{parent}/" if parent else ""
    spec = LayoutSpec(
        layout="ph2",
        image_dir=parent,
        mask_dir=parent,
        image_ext=ext,
        mask_suffix=f"_lesion{ext}",
        image_template=f"{prefix}{{id}}/{{id}}_Dermoscopic_Image/{{id}}{ext}",
        mask_template=f"{prefix}{{id}}/{{id}}_lesion/{{id}}_lesion{ext}",
        label_files=tuple(label_files),
    )
    return LayoutRead("ph2", candidates, spec, problems)


_XLSX = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def read_xlsx_rows(path: Path) -> list[list[str]]:
    """Cell text of the first worksheet of an .xlsx file, row by row (stdlib only)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            shared = []
            if "xl/sharedStrings.xml" in names:
                for item in ElementTree.fromstring(zf.read("xl/sharedStrings.xml")).iter(f"{_XLSX}si"):
                    shared.append("".join(t.text or "" for t in item.iter(f"{_XLSX}t")))
            sheet = min(n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
            root = ElementTree.fromstring(zf.read(sheet))
    except (OSError, zipfile.BadZipFile, ElementTree.ParseError, ValueError, KeyError) as exc:
        raise DatasetError(f"cannot read the PH2 spreadsheet ({exc})", path=path, fix="use PH2_dataset.txt") from None
    rows = []
    for row in root.iter(f"{_XLSX}row"):
        cells: dict[int, str] = {}
        for cell in row.iter(f"{_XLSX}c"):
            letters = re.match(r"[A-Z]+", cell.get("r", "A"))[0]
            col = 0
            for ch in letters:
                col = col * 26 + ord(ch) - 64
            kind, value = cell.get("t"), cell.find(f"{_XLSX}v")
            if kind == "s" and value is not None:
                text = shared[int(value.text)]
            elif kind == "inlineStr":
                text = "".join(t.text or "" for t in cell.iter(f"{_XLSX}t"))
            else:
                text = value.text if value is not None and value.text else ""
            cells[col - 1] = text.strip()
        rows.append([cells.get(i, "") for i in range(max(cells, default=-1) + 1)])
    return rows


def ph2_xlsx_labels(path: Path) -> dict[str, tuple[Labels, dict[str, str]]]:
    """``PH2_dataset.xlsx``: the header row names 'Image Name'; diagnosis columns are marked 'X'."""
    rows = read_xlsx_rows(path)
    start = next((i for i, r in enumerate(rows) if any(c.lower() == "image name" for c in r)), None)
    if start is None:
        return {}
    header = [c.lower().split("\n")[0].strip() for c in rows[start]]
    out = {}
    for cells in rows[start + 1 :]:
        row = {header[i]: (cells[i] if i < len(cells) else "") for i in range(len(header)) if header[i]}
        name = row.get("image name", "")
        if not _CASE.fullmatch(name):
            continue
        marked = [
            k for k, key in enumerate(("common nevus", "atypical nevus", "melanoma")) if row.get(key, "").upper() == "X"
        ]
        diagnosis = PH2_CLINICAL.get(str(marked[0])) if marked else None
        extra = (("histology", row["histological diagnosis"]),) if row.get("histological diagnosis") else ()
        out[name] = (Labels(diagnosis=diagnosis, extra=extra), row)
    return out
