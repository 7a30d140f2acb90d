"""``lesionaug-run.json``: what made an output folder, and whether a folder may be written into.

The run record is written atomically when a run starts (it marks the folder as lesionaug's), again
when it stops early (status "incomplete") and when it finishes (status "complete", with every
original and label file and its sha256, so ``verify`` can check the whole folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lesionaug.atomic_files import is_temporary, write_text_atomic
from lesionaug.errors import ConfigError
from lesionaug.formats import LOCK_NAME, MANIFEST_NAME, RUN_NAME, RUN_SCHEMA
from lesionaug.safe_paths import resolve_inside

OWN_FILES = frozenset({RUN_NAME, MANIFEST_NAME, LOCK_NAME})
_RESTORE = "restore it from the run that wrote it, or delete the output folder and rerun augment"


def read_run_record(folder: Path) -> dict | None:
    """The folder's run record, or None when it has none."""
    path = Path(folder) / RUN_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the run record cannot be read ({exc})",
            path=path,
            fix=_RESTORE,
        ) from None
    if not isinstance(record, dict) or record.get("schema") != RUN_SCHEMA:
        raise ConfigError(
            "not a lesionaug run record (unknown schema)",
            path=path,
            fix="point --out at a new folder",
        )
    check_listed_paths(Path(folder), record, path)
    return record


def check_listed_paths(folder: Path, record: dict, source: Path) -> None:
    """Every original and label file the record lists must lie inside ``folder`` (``safe_paths``)."""
    outputs = record.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise ConfigError("the run record's outputs are not a table", path=source, fix=_RESTORE)
    for kind in ("originals", "label_files"):
        items = outputs.get(kind) or []
        if not isinstance(items, list):
            raise ConfigError(f"the run record's {kind} are not a list", path=source, fix=_RESTORE)
        for i, item in enumerate(items):
            rel = item.get("path") if isinstance(item, dict) else None
            resolve_inside(folder, rel, source=source, where=f"run record {kind}[{i}]", fix=_RESTORE)


def write_run_record(folder: Path, record: dict) -> None:
    record = {"schema": RUN_SCHEMA, **{k: v for k, v in record.items() if k != "schema"}}
    write_text_atomic(Path(folder) / RUN_NAME, json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def check_output_folder(out: Path, input_root: Path | None = None) -> dict | None:
    """Refuse an output that overlaps the input or was not made by lesionaug; return its record.

    A folder may be written into when it does not exist, is empty (a lock file or temporaries
    from a run killed before its first record do not count), or carries a run record.
    """
    out = Path(out)
    resolved = out.resolve()
    if input_root is not None:
        root = Path(input_root).resolve()
        if _is_within(resolved, root) or _is_within(root, resolved):
            raise ConfigError(
                "the output folder overlaps the input dataset, which is never written to",
                path=out,
                fix=f"choose an --out outside {root}",
            )
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError("the output path is a file, not a folder", path=out, fix="choose another --out")
    record = read_run_record(out)
    if record is not None:
        return record
    foreign = [name for name in os.listdir(out) if name != LOCK_NAME and not is_temporary(Path(name))]
    if foreign:
        raise ConfigError(
            f"the output folder exists and was not made by lesionaug (it holds {foreign[0]!r})",
            path=out,
            fix="choose a new or empty --out; lesionaug never writes into other folders",
        )
    return None
