"""Join the outputs of ``augment --shard i/N`` into one dataset with one manifest in job order.

Shards must come from the same plan (the plan hash without the shard selection), the same engine
and sampler settings and the same output layout, and together cover every shard exactly once.
Every path a shard's manifest or run record names must lie inside that shard (``safe_paths``), and
every file is hashed against the sha256 recorded for it before anything is written, so a crafted or
damaged shard is refused (exit 3, naming the shard's file and line) instead of being merged.
Files are hard-linked from the shards where the filesystem allows, so a merge costs no space.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lesionaug.atomic_files import link_or_copy, sha256_file
from lesionaug.errors import ConfigError
from lesionaug.formats import MANIFEST_NAME, RUN_NAME
from lesionaug.output.folder import finish_output, label_target_from_record
from lesionaug.output.lock import OutputLock
from lesionaug.output.manifest import latest_by_index, read_manifest_lines
from lesionaug.output.run_record import (
    check_output_folder,
    read_run_record,
    write_run_record,
)
from lesionaug.progress import SILENT, Reporter
from lesionaug.safe_paths import resolve_inside


def _shard_record(folder: Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("no such shard folder", path=folder, fix="pass folders written by `lesionaug augment --shard i/N`")
    record = read_run_record(folder)
    if record is None:
        raise ConfigError("not a lesionaug output (no run record)", path=folder, fix="pass folders written by augment")
    if record.get("status") != "complete":
        raise ConfigError(
            f"shard is not finished (status {record.get('status')!r})",
            path=folder,
            fix="rerun its augment command to finish it, then merge",
        )
    return record


def check_shards(folders: list[Path]) -> list[dict]:
    """The shards' run records, checked to form one whole plan; raises ConfigError otherwise."""
    if not folders:
        raise ConfigError("no shard folders given", fix="pass the folders written by each `augment --shard i/N`")
    records = [_shard_record(f) for f in folders]
    first = records[0]
    for folder, record in zip(folders[1:], records[1:]):
        if record.get("identity") != first.get("identity") or record["jobs"].get("n") != first["jobs"].get("n"):
            raise ConfigError(
                f"shard was made by a different plan, engine, sampler or output layout than {folders[0]}",
                path=folder,
                fix="merge only shards of one `augment` command that differ in --shard alone",
            )
        if record["outputs"].get("originals") != first["outputs"].get("originals"):
            raise ConfigError(
                f"shard holds different original files than {folders[0]}",
                path=folder,
                fix="merge shards made from the same dataset with the same --synthetic-only setting",
            )
    shards = [tuple(r["jobs"].get("shard") or (0, 1)) for r in records]
    count = shards[0][1]
    if any(n != count for _, n in shards):
        raise ConfigError("shards split the plan into different numbers of parts", fix="use one N in every --shard i/N")
    seen: dict[int, Path] = {}
    for folder, (i, _n) in zip(folders, shards):
        if i in seen:
            raise ConfigError(f"shard {i}/{count} given twice (also {seen[i]})", path=folder, fix="pass each shard once")
        seen[i] = folder
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise ConfigError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing from the merge",
            fix="pass the output of every shard of the plan",
        )
    return records


@dataclass(frozen=True)
class ShardFile:
    """A file a shard lists: where it is, the sha256 recorded for it, and which line recorded it."""

    folder: Path
    rel: str
    sha256: str | None
    source: Path  # the manifest or run record that lists it
    where: str  # "manifest line 4 (image)", "run record originals[2]"


def shard_files(shard_dirs: list[Path], records: list[dict]) -> tuple[list[dict], list[ShardFile], list[ShardFile]]:
    """The pairs' manifest entries, the files to link (originals of the first shard, every shard's
    pairs) and the first shard's label files; paths are checked to lie inside their shard on reading."""
    first, first_dir = records[0], shard_dirs[0]
    outputs = first.get("outputs") or {}
    record_path = first_dir / RUN_NAME
    links = [ShardFile(first_dir, item["path"], item.get("sha256"), record_path, f"run record originals[{i}]")
             for i, item in enumerate(outputs.get("originals") or [])]
    labels = [ShardFile(first_dir, item["path"], item.get("sha256"), record_path, f"run record label_files[{i}]")
              for i, item in enumerate(outputs.get("label_files") or [])]
    entries: list[dict] = []
    for folder in shard_dirs:
        manifest = folder / MANIFEST_NAME
        latest = {int(e["index"]): (number, e) for number, e in read_manifest_lines(manifest)}
        for index in sorted(latest):
            number, entry = latest[index]
            entries.append(entry)
            digests = entry["sha256"] if isinstance(entry["sha256"], dict) else {}
            links += [ShardFile(folder, entry[key], digests.get(key), manifest, f"manifest line {number} ({key})")
                      for key in ("image", "mask")]
    return entries, links, labels


def check_shard_files(files: list[ShardFile], reporter: Reporter = SILENT, *, workers: int | None = None) -> None:
    """Hash every file against the sha256 its shard recorded; the first that differs is a ConfigError."""

    def digest(item: ShardFile) -> str | None:
        path = resolve_inside(item.folder, item.rel, source=item.source, where=item.where)
        return sha256_file(path) if path.is_file() else None

    pool = ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2))
    with reporter.task("checking shard files", total=len(files)) as task, pool:
        for item, actual in zip(files, pool.map(digest, files), strict=True):
            if actual is None or actual != item.sha256:
                found = "is missing" if actual is None else f"has sha256 {actual[:12]}..."
                raise ConfigError(
                    f"{item.where} lists {item.rel}, which {found}, not the recorded {str(item.sha256)[:12]}...",
                    path=item.source,
                    fix=f"run `lesionaug verify {item.folder}`, rerun that shard's augment command to repair it, "
                    "then merge",
                )
            task.advance()


def merge_shards(out: Path, shard_dirs: list[Path], reporter: Reporter = SILENT, *, break_lock: bool = False) -> dict:
    """Write ``out``: the originals, every shard's pairs, label files and one manifest in job order."""
    started = time.time()
    out = Path(out)
    shard_dirs = [Path(d) for d in shard_dirs]
    # 1. Check the shards and the output folder before writing anything.
    records = check_shards(shard_dirs)
    for folder in shard_dirs:
        check_output_folder(out, folder)  # refuses an output inside (or around) a shard
    existing = check_output_folder(out)
    if existing is not None:
        raise ConfigError("the output folder already holds a lesionaug output", path=out, fix="merge into a new folder")
    # 2. Every file the merge reads, checked against the sha256 its shard recorded.
    entries, links, labels = shard_files(shard_dirs, records)
    by_index = latest_by_index(entries)
    if len(by_index) != len(entries):
        raise ConfigError("two shards hold the same job", fix="merge the shards of one plan, each once")
    check_shard_files(links + labels, reporter)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, command="merge", break_lock=break_lock):
        # 3. The originals (from the first shard: all shards hold the same ones) and every shard's pairs.
        with reporter.task("merging", total=len(links)) as task:
            for item in links:
                target = resolve_inside(out, item.rel, source=item.source, where=item.where)
                target.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(resolve_inside(item.folder, item.rel, source=item.source, where=item.where), target)
                task.advance()
        # 4. Label files, manifest and record, as an unsharded run would end.
        first = records[0]
        targets = [label_target_from_record(shard_dirs[0], item) for item in first["outputs"].get("label_files") or []]
        config = dict(first.get("config") or {})
        config["shard"] = None
        record = {
            **{k: v for k, v in first.items() if k not in ("timings", "counts", "space_estimate")},
            "config": config,
            "jobs": {**first["jobs"], "shard": None},
            "status": "merging",
            "counts": {"n_jobs": len(by_index), "n_shards": len(shard_dirs)},
            "merged_from": [str(d.resolve()) for d in shard_dirs],
        }
        write_run_record(out, record)
        final = finish_output(out, {**record, "timings": {"merge_s": round(time.time() - started, 3)}}, targets, entries)
    return {
        "out": str(out),
        "manifest": str(out / MANIFEST_NAME),
        "n_shards": len(shard_dirs),
        "n_pairs": len(by_index),
        "plan_hash": final.get("plan_hash"),
    }
