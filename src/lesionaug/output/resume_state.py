"""What an existing output folder already holds, and whether this run may continue it.

A folder made by the same plan (same jobs, sampler, engine and output layout) is resumed: its
finished pairs (files present and matching their manifest hashes) are kept. A different plan is
refused unless ``--force``, which removes the old run's files (only those its manifest and run
record list) before writing anew; when only ``--n`` changed, the pairs both plans share are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from lesionaug.atomic_files import sha256_file
from lesionaug.errors import ConfigError
from lesionaug.formats import MANIFEST_NAME
from lesionaug.output.manifest import (
    latest_by_index,
    read_manifest,
    write_manifest_sorted,
)
from lesionaug.plan.jobs import plan_hash
from lesionaug.safe_paths import resolve_inside


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def check_previous_run(out: Path, previous: dict | None, identity: dict, jobs: dict, *, force: bool) -> bool:
    """True when a different previous run is to be replaced (``--force``); raises when it may not be."""
    if previous is None:
        return False
    old_identity = {k: v for k, v in (previous.get("identity") or {}).items() if k in identity}
    changed = _differences(old_identity, identity) + _differences(previous.get("jobs") or {}, jobs, "jobs.")
    if not changed:
        return False
    if force:
        return True
    shown = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
    raise ConfigError(
        f"the output folder holds a different augment plan (differs in {shown})",
        path=out,
        fix="rerun with the options that made it to resume it, choose another --out, or pass --force to replace "
        "it (when only --n changed, --force keeps the pairs both plans share)",
    )


def clear_previous_outputs(out: Path, previous: dict) -> int:
    """Remove the files a previous run listed (its pairs, originals and label files); returns how many."""
    out = Path(out)
    listed: list[str] = []
    for entry in read_manifest(out / MANIFEST_NAME):
        listed += [entry["image"], entry["mask"]]
    outputs = previous.get("outputs") or {}
    listed += [item["path"] for item in outputs.get("originals") or []]
    listed += [item["path"] for item in outputs.get("label_files") or []]
    listed.append(MANIFEST_NAME)
    removed = 0
    for rel in listed:
        path = resolve_inside(out, rel, source=out, where="the previous run's file list")
        if path.is_file():
            os.unlink(path)
            removed += 1
    return removed


def only_n_changed(previous: dict | None, identity: dict, jobs: dict, plan) -> bool:
    """True when the previous run is this plan with another ``--n``: its pairs below both n are ours.

    Job k depends only on (seed, k), so a run grown from 1,000 to 3,000 pairs keeps the first 1,000.
    """
    from dataclasses import replace

    if previous is None:
        return False
    old_identity, old_jobs = previous.get("identity") or {}, previous.get("jobs") or {}
    old_n = old_jobs.get("n")
    if not isinstance(old_n, int) or old_n < 1 or old_jobs.get("shard") != jobs.get("shard"):
        return False
    if {k: v for k, v in old_identity.items() if k != "plan"} != {k: v for k, v in identity.items() if k != "plan"}:
        return False
    config = replace(plan.config, n=old_n)
    return plan_hash(config, plan.dataset_fingerprint, plan.train_fingerprint, plan.labels_digest) == old_identity.get("plan")


def count_listed_pairs(out: Path, indices: range) -> int:
    """Pairs the output's manifest lists at ``indices``, unchecked: an upper bound on what a resume keeps."""
    path = Path(out) / MANIFEST_NAME
    if not path.exists():
        return 0
    return sum(1 for index in latest_by_index(read_manifest(path)) if index in indices)


def _matches(entry: dict, job) -> bool:
    return (
        job is not None
        and entry["id"] == job.id
        and int(entry["mask_seed"]) == job.mask_seed
        and int(entry["noise_seed"]) == job.noise_seed
        and entry["prompt"] == job.prompt
    )


def finished_entries(out: Path, plan, *, verify_hashes: bool, rewrite: bool = False) -> list[dict]:
    """Manifest entries of this plan's jobs whose files are in place (and match their hashes).

    With ``rewrite`` the manifest is rewritten to hold exactly those, so a line whose files were
    lost or changed is regenerated rather than trusted.
    """
    out = Path(out)
    path = out / MANIFEST_NAME
    if not path.exists():
        return []
    entries = latest_by_index(read_manifest(path))
    kept = []
    for index in sorted(entries):
        entry = entries[index]
        job = plan.job(index)  # made for this entry alone: the plan is never walked whole
        if job is None and rewrite:  # a job this plan no longer has (a smaller --n): its files go
            for rel in (entry["image"], entry["mask"]):
                dropped = resolve_inside(out, rel, source=path, where=f"the manifest line of job {index}")
                if dropped.is_file():
                    os.unlink(dropped)
        if not _matches(entry, job):
            continue
        image, mask = out / entry["image"], out / entry["mask"]  # inside ``out``: read_manifest checked them
        if not (image.is_file() and mask.is_file()):
            continue
        if verify_hashes and (
            sha256_file(image) != entry["sha256"]["image"] or sha256_file(mask) != entry["sha256"]["mask"]
        ):
            continue
        kept.append(entry)
    if rewrite and len(kept) != len(entries):
        write_manifest_sorted(path, kept)
    return kept
