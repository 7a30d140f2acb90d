"""Join the outputs of ``augment --shard i/N`` into one dataset with one manifest in job order.

Shards must come from the same plan (the plan hash without the shard selection), the same engine
and sampler settings and the same output layout, and together cover every shard exactly once.
Files are hard-linked from the shards where the filesystem allows, so a merge costs no space.
"""

from __future__ import annotations

import time
from pathlib import Path

from lesionaug.atomic_files import link_or_copy
from lesionaug.errors import ConfigError
from lesionaug.formats import MANIFEST_NAME
from lesionaug.output.folder import finish_output, label_target_from_record
from lesionaug.output.lock import OutputLock
from lesionaug.output.manifest import latest_by_index, read_manifest
from lesionaug.output.run_record import (
    check_output_folder,
    read_run_record,
    write_run_record,
)
from lesionaug.progress import SILENT, Reporter


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


def merge_shards(out: Path, shard_dirs: list[Path], reporter: Reporter = SILENT) -> dict:
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
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, command="merge"):
        # 2. Originals from the first shard (all shards hold the same ones).
        first = records[0]
        originals = first["outputs"].get("originals") or []
        sources = [(shard_dirs[0], item["path"]) for item in originals]
        # 3. Every shard's pairs.
        entries: list[dict] = []
        for folder in shard_dirs:
            shard_entries = list(latest_by_index(read_manifest(folder / MANIFEST_NAME)).values())
            entries.extend(shard_entries)
            sources.extend((folder, rel) for e in shard_entries for rel in (e["image"], e["mask"]))
        by_index = latest_by_index(entries)
        if len(by_index) != len(entries):
            raise ConfigError("two shards hold the same job", fix="merge the shards of one plan, each once")
        with reporter.task("merging", total=len(sources)) as task:
            for folder, rel in sources:
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(folder / rel, target)
                task.advance()
        # 4. Label files, manifest and record, as an unsharded run would end.
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
