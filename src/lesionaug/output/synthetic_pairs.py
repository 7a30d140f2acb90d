"""The synthetic pairs of an augmented folder, and which real images their generator was trained on.

The pairs are read from ``lesionaug-manifest.jsonl`` (never guessed from file names). Provenance is
the generator's training ids (and, from ``augment``'s run record, the real pairs its masks and
labels were fitted on): ``lesionaug-run.json`` may carry them itself, or name the model or
engine folder whose ``lesionaug.json`` does. ``check_no_leakage`` refuses synthetic data from a
generator that saw any image of the split a segmenter is scored on: those images would leak into
training through the generator and inflate the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from lesionaug.cards import find_card
from lesionaug.errors import ConfigError, DatasetError
from lesionaug.formats import CARD_NAME as MODEL_CARD
from lesionaug.formats import MANIFEST_NAME, RUN_NAME
from lesionaug.output.manifest import latest_by_index, read_manifest
from lesionaug.output.run_record import read_run_record


@dataclass(frozen=True)
class SyntheticPair:
    id: str
    index: int
    image: Path
    mask: Path
    labels: dict
    prompt: str


@dataclass(frozen=True)
class SyntheticSource:
    """An augmented folder's synthetic pairs (in job order) and their generator's training ids."""

    folder: Path
    pairs: tuple[SyntheticPair, ...]
    train_ids: frozenset[str] | None  # None: unknown
    split_fingerprint: str | None
    provenance: str  # where train_ids came from, or why they are unknown
    # The real pairs augment fitted the masks' shape model and the label sampler on (None: not recorded).
    plan_ids: frozenset[str] | None = None


def read_synthetic_source(folder: Path) -> SyntheticSource:
    """Read the manifest and the provenance of an augmented folder; check every pair's files exist."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            "the augmented folder does not exist", path=folder, fix="pass the --out of `lesionaug augment`"
        )
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise DatasetError(
            f"no {MANIFEST_NAME} in the augmented folder, so its synthetic pairs are unknown",
            path=folder,
            fix="pass a folder written by `lesionaug augment`",
        )
    entries = latest_by_index(read_manifest(manifest))
    pairs = []
    for index in sorted(entries):
        entry = entries[index]
        image, mask = folder / entry["image"], folder / entry["mask"]
        for path in (image, mask):
            if not path.is_file():
                raise DatasetError(
                    f"synthetic pair {entry['id']} is listed in the manifest but its file is missing",
                    path=path,
                    fix=f"run `lesionaug verify {folder}` and resume the augment run",
                )
        pairs.append(SyntheticPair(entry["id"], index, image, mask, entry.get("labels") or {}, entry.get("prompt", "")))

    record = read_run_record(folder)
    if record is None:
        return SyntheticSource(folder, tuple(pairs), None, None, f"{RUN_NAME} is missing")
    ids, fingerprint, where = _find_train_ids(record, folder)
    plan_ids = record.get("plan_fitted_ids")
    plan_ids = frozenset(map(str, plan_ids)) if isinstance(plan_ids, list) else None
    return SyntheticSource(folder, tuple(pairs), ids, fingerprint, where, plan_ids)


def _walk(value, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """Every (key path, value) in a nested JSON structure."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*path, str(k)), v
            yield from _walk(v, (*path, str(k)))
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, path)


def _card_ids(card: dict) -> tuple[set[str] | None, str | None]:
    ids: set[str] | None = None
    fingerprint = None
    for path, value in _walk(card):
        if path[-1] == "train_ids" and isinstance(value, list):
            ids = (ids or set()) | {str(v) for v in value}
        elif path[-1] == "split_fingerprint" and isinstance(value, str) and fingerprint is None:
            fingerprint = value
    return ids, fingerprint


def _find_train_ids(record: dict, folder: Path) -> tuple[frozenset[str] | None, str | None, str]:
    # 1. The run record itself (augment copies the model card's training ids into it).
    ids, fingerprint = _card_ids(record)
    if ids is not None:
        return frozenset(ids), fingerprint, "the run record's train_ids"
    # 2. A model or engine folder named in the run record, read through its lesionaug.json.
    tried = []
    for path, value in _walk(record):
        if not isinstance(value, str) or not any(w in part.lower() for part in path for w in ("model", "engine")):
            continue
        for base in (Path(value), folder / value):
            card = find_card(base)
            if card is None:
                continue
            ids, fingerprint = _card_ids(card)
            if ids is not None:
                return frozenset(ids), fingerprint, f"{base / MODEL_CARD}"
            tried.append(str(base / MODEL_CARD))
    if tried:
        return None, None, f"{tried[0]} has no train_ids"
    return None, None, "the run record names no model or engine folder with a lesionaug.json"


def check_no_leakage(source: SyntheticSource, test_ids: Iterable[str], *, allow_unknown: bool) -> str:
    """Refuse when the generator was trained on any test image; returns a line saying what was checked."""
    test = set(test_ids)
    if source.train_ids is None:
        if allow_unknown:
            return f"provenance unknown ({source.provenance}); accepted with --allow-unknown-provenance"
        raise ConfigError(
            f"cannot tell which images the generator of the synthetic pairs was trained on ({source.provenance}), "
            "so test images may have leaked into them",
            path=source.folder,
            fix="use a folder written by `lesionaug augment` from a model trained by `lesionaug train`, "
            "or pass --allow-unknown-provenance if you know the generator never saw the test split",
        )
    leaked = sorted(test & source.train_ids)
    if leaked:
        shown = ", ".join(leaked[:3]) + (", ..." if len(leaked) > 3 else "")
        raise ConfigError(
            f"the synthetic pairs come from a model trained on {len(leaked)} image(s) of the test split ({shown}); "
            "scores would be inflated",
            path=source.folder,
            fix="train the generator on this dataset's training split only (`lesionaug train` does), "
            "with the same --split-seed",
        )
    return f"the generator's {len(source.train_ids)} training ids ({source.provenance}) include no test image"
