"""The augmented folder as a whole: originals linked in, label files extended, a run finished.

Originals are hard-linked by default (copied across filesystems): no space, but the output shares
the input's inodes, so editing such a file in place edits the input too (``--link copy`` or
``--link reflink`` avoid that). lesionaug itself never writes into a linked file.

``augment`` and ``merge`` both end with ``finish_output``: label files rebuilt from their original
part plus one row per pair in job order, the manifest rewritten in job order, and the run record
marked complete with the sha256 of every file, so any finished folder can be verified.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lesionaug.atomic_files import (
    clone_file,
    fsync_dir,
    place_file,
    sha256_file,
    temporary_name,
    write_bytes_atomic,
)
from lesionaug.dataset.label_write import header_part, insertion_point, render_rows
from lesionaug.dataset.labels import Labels
from lesionaug.dataset.layouts.tree import is_within
from lesionaug.errors import ConfigError
from lesionaug.formats import MANIFEST_NAME
from lesionaug.output.manifest import latest_by_index, write_manifest_sorted
from lesionaug.output.run_record import OWN_FILES, write_run_record
from lesionaug.progress import SILENT, Reporter

STYLE_ROWS = 50  # rows of an input label file kept to decide how new rows are written


@dataclass(frozen=True)
class LabelTarget:
    """A label file of the output: the part kept from the input, and how new rows are written."""

    path: str
    format: str
    key: str
    base: bytes  # the input's file (or only its header, with --synthetic-only)
    style_source: str  # header and first rows of the input's file

    def record(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "key": self.key,
            "base_bytes": len(self.base),
            "insert_at": insertion_point(self.format, self.base),
            "style_source": self.style_source,
        }


def label_target(root: Path, path: str, fmt: str, key: str, *, synthetic_only: bool) -> LabelTarget:
    data = (Path(root) / path).read_bytes()
    style = b"".join(data.splitlines(keepends=True)[: STYLE_ROWS + 1]).decode("utf-8", errors="replace")
    base = header_part(data, fmt) if synthetic_only else data
    return LabelTarget(path=path, format=fmt, key=key, base=base, style_source=style)


def label_target_from_record(folder: Path, item: dict) -> LabelTarget:
    """Rebuild a label target from a finished folder: its file minus the rows the run inserted."""
    data = (Path(folder) / item["path"]).read_bytes()
    base_bytes = int(item["base_bytes"])
    at = int(item.get("insert_at", base_bytes))
    tail = base_bytes - at
    base = data[:at] + (data[len(data) - tail :] if tail else b"")
    return LabelTarget(item["path"], item["format"], item.get("key", ""), base, item["style_source"])


def list_originals(root: Path, exclude: set[str]) -> list[str]:
    """Every regular file under the input root (relative POSIX paths), minus ``exclude`` and our own files.

    Folder symlinks are followed as the dataset index follows them: only when they stay inside the
    root and lead to a folder not listed yet (so no loop, and no walk of ``/`` through a link to it).
    """
    root_real = os.path.realpath(root)
    seen = {root_real}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, name))
            if is_within(real, root_real) and real not in seen:
                seen.add(real)
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel in exclude or rel in OWN_FILES:
                continue
            if os.path.isfile(os.path.join(dirpath, name)):
                found.append(rel)
    return found


def _already_placed(source: Path, dst: Path, how: str) -> bool:
    """``dst`` already holds ``source`` the way ``how`` asks (the same inode, or a copy of it)."""
    if dst.is_symlink() or not dst.is_file():
        return False
    same = os.path.samefile(source, dst)
    if how == "hard":
        return same
    a, b = source.stat(), dst.stat()
    return not same and a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns  # copies keep the mtime


def link_originals(
    items: list[tuple[Path, str]], out: Path, reporter: Reporter = SILENT, *, workers: int = 4, how: str = "hard"
) -> list[dict]:
    """Put each (source, relative path) into ``out`` (``place_file``: hard link, copy or reflink).

    A symlinked source is resolved first: its target is linked or copied, never the link, which
    would dangle at the output's depth when it is relative. Returns path, size and sha256 of each.
    """

    def one(item: tuple[Path, str]) -> dict:
        src, rel = item
        source = Path(os.path.realpath(src))
        dst = Path(out) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not _already_placed(source, dst, how):
            place_file(source, dst, how)
        return {"path": rel, "size": dst.stat().st_size, "sha256": sha256_file(dst)}

    results: list[dict] = []
    with reporter.task("linking originals", total=len(items)) as task, ThreadPoolExecutor(workers) as pool:
        for result in pool.map(one, items):
            results.append(result)
            task.advance()
    return results


def check_link_mode(items: list[tuple[Path, str]], out: Path, how: str) -> None:
    """Fail before generating when ``--link reflink`` cannot work: clone one original as a trial."""
    if how != "reflink" or not items:
        return
    source = Path(os.path.realpath(items[0][0]))
    trial = temporary_name(Path(out) / "reflink-trial")
    try:
        clone_file(source, trial)
    except OSError as exc:
        raise ConfigError(
            f"--link reflink: the output's filesystem cannot clone {source.name} ({exc.strerror or exc})",
            path=out,
            fix="put --out on a filesystem with reflinks (btrfs, XFS, bcachefs) beside the input, "
            "or use --link hard or --link copy",
        ) from None
    trial.unlink()


def write_label_files(out: Path, targets: list[LabelTarget], entries: list[dict]) -> list[dict]:
    """Each label file rebuilt: its base, then a row per pair in job order. Returns their records."""
    by_index = latest_by_index(entries)
    pairs = [(by_index[k]["id"], Labels.from_dict(by_index[k]["labels"])) for k in sorted(by_index)]
    records: list[dict] = []
    for target in targets:
        data = render_rows(
            target.format, target.base, pairs, key=target.key, original=target.style_source.encode("utf-8")
        )
        path = Path(out) / target.path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)  # a new inode: a linked input file is never touched
        records.append({**target.record(), "sha256": sha256_file(path)})
    return records


def finish_output(out: Path, record: dict, targets: list[LabelTarget], entries: list[dict]) -> dict:
    """Label files, the manifest in job order, and the run record marked complete."""
    out = Path(out)
    label_records = write_label_files(out, targets, entries)
    write_manifest_sorted(out / MANIFEST_NAME, entries)
    outputs = dict(record.get("outputs") or {})
    outputs["label_files"] = label_records
    outputs["manifest_sha256"] = sha256_file(out / MANIFEST_NAME)
    final = {**record, "status": "complete", "outputs": outputs}
    write_run_record(out, final)
    fsync_dir(out)
    return final
