"""Check an augmented folder against its manifest and run record: missing, changed and extra files.

Every synthetic image and mask is hashed against its manifest line; originals and label files
against the list the run recorded when it finished; every other file under the folder is extra.
A run that did not finish is reported by the jobs it has not written yet.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from lesionaug.atomic_files import sha256_file
from lesionaug.errors import ConfigError
from lesionaug.formats import MANIFEST_NAME, RUN_NAME
from lesionaug.output.manifest import latest_by_index, read_manifest
from lesionaug.output.run_record import read_run_record
from lesionaug.progress import SILENT, Reporter

DIFFERENCE_KINDS = ("missing", "changed", "extra", "not_generated")


@dataclass(frozen=True)
class Difference:
    kind: str  # one of DIFFERENCE_KINDS
    path: str  # relative to the output folder ("job 17" for a pair never generated)
    message: str


def expected_indices(record: dict) -> list[int]:
    """The job indices a run (or shard) is meant to write."""
    jobs = record.get("jobs") or {}
    n = int(jobs.get("n", 0))
    shard = jobs.get("shard")
    dropped = set((record.get("fidelity_filter") or {}).get("dropped_indices") or ())  # --min-fidelity drops
    if shard:
        i, count = int(shard[0]), int(shard[1])
        return [k for k in range(n) if k % count == i and k not in dropped]
    return [k for k in range(n) if k not in dropped]


def expected_files(record: dict, entries: list[dict]) -> dict[str, str | None]:
    """Relative path -> expected sha256 (None: present, content not recorded) of every listed file."""
    outputs = record.get("outputs") or {}
    files: dict[str, str | None] = {RUN_NAME: None, MANIFEST_NAME: outputs.get("manifest_sha256")}
    for item in outputs.get("originals") or []:
        files[item["path"]] = item.get("sha256")
    for item in outputs.get("label_files") or []:
        files[item["path"]] = item.get("sha256")
    for entry in entries:
        files[entry["image"]] = entry["sha256"]["image"]
        files[entry["mask"]] = entry["sha256"]["mask"]
    return files


def _all_files(out: Path) -> set[str]:
    found: set[str] = set()
    for dirpath, _dirnames, filenames in os.walk(out):
        for name in filenames:
            found.add(Path(dirpath, name).relative_to(out).as_posix())
    return found


def verify_output(out: Path, reporter: Reporter = SILENT, *, workers: int | None = None) -> dict:
    """Compare every file under ``out`` with what its manifest and run record say it holds."""
    out = Path(out)
    if not out.is_dir():
        raise ConfigError("no such output folder", path=out, fix="pass the folder `lesionaug augment` wrote")
    record = read_run_record(out)
    if record is None:
        raise ConfigError(
            f"not a lesionaug output (no {RUN_NAME})",
            path=out,
            fix="pass the folder `lesionaug augment` or `lesionaug merge` wrote",
        )
    entries = list(latest_by_index(read_manifest(out / MANIFEST_NAME)).values())
    expected = expected_files(record, entries)
    present = _all_files(out)
    differences: list[Difference] = []

    # 1. Files listed but absent; files present but not listed.
    for rel in sorted(set(expected) - present):
        differences.append(Difference("missing", rel, "listed in the manifest or run record but absent"))
    for rel in sorted(present - set(expected)):
        differences.append(Difference("extra", rel, "present but not listed in the manifest or run record"))

    # 2. Content of every listed file that has a recorded hash.
    to_hash = sorted(rel for rel, digest in expected.items() if digest is not None and rel in present)
    pool = ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2))
    with reporter.task("verifying", total=len(to_hash)) as task, pool:
        for rel, actual in zip(to_hash, pool.map(lambda r: sha256_file(out / r), to_hash), strict=True):
            if actual != expected[rel]:
                differences.append(
                    Difference("changed", rel, f"sha256 {actual[:12]}... differs from recorded {expected[rel][:12]}...")
                )
            task.advance()

    # 3. Jobs of the plan that have no pair yet (an interrupted run).
    written = {int(e["index"]) for e in entries}
    missing_jobs = [k for k in expected_indices(record) if k not in written]
    for k in missing_jobs:
        differences.append(Difference("not_generated", f"job {k}", "planned but not generated; rerun augment to resume"))
    if record.get("status") != "complete" and not missing_jobs:
        differences.append(Difference("not_generated", RUN_NAME, f"run status is {record.get('status')!r}, not complete"))

    counts = {kind: sum(1 for d in differences if d.kind == kind) for kind in DIFFERENCE_KINDS}
    return {
        "out": str(out),
        "ok": not differences,
        "status": record.get("status"),
        "n_pairs": len(entries),
        "n_files_checked": len(to_hash),
        "counts": counts,
        "differences": [asdict(d) for d in differences],
    }
