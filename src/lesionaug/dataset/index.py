"""Reading a dataset folder into a ``DatasetIndex``: layout, samples, splits, problems, fingerprint.

    idx = load_dataset("./isic")                  # raises DatasetError (exit 3) on bad input
    train = idx.usable("train")                   # samples with a mask and no problem
    idx.subset_fingerprint(train)                 # what a model trained on them records
    idx.spec.image_path(idx.root, "SYN_0000001")  # where a writer puts a new pair (LayoutSpec)

Indexing reads each file's bytes once to hash it and parses only its header (``PIL.Image.open(...).size``),
never decoding pixels, so 10,000 images index in seconds. Sizes are upright: a file's EXIF orientation
is applied (``exif_oriented`` lists where), as it is when the pixels are read. Problems with single files or rows are
recorded, not raised; ``DatasetIndex.check`` turns them into a ``DatasetError`` where a command
needs that. Nothing is ever written: reading a dataset has no side effects on disk.

Splits come from folder names (Training / Validation / Test, train / val / test) when the folders give
at least two splits; otherwise every sample gets a seeded split, 70/10/20 train/val/test by a hash of
(seed, lesion id or image id), stable when samples are added or removed (``split_source`` records it).

Labels: the layout's own label files, then each external table of ``labels=`` (``--labels FILE``,
``label_tables.py``) joined by image id (``label_join.py``: conflicts are a ``DatasetError``). The
pairs ``lesionaug augment`` added (its manifest lists them) are marked ``synthetic`` and get the
labels they were generated from, from the manifest, whatever the layout's files can say about them.

Fingerprint: each sample's digest hashes its id, the content hashes of its image and mask
(``maskio.content_digest``) and its normalised labels; the dataset fingerprint hashes the sorted
sample digests, so it changes when any image, mask or label changes (a joined label table too),
and not when files are copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lesionaug.dataset.files import (
    DAMAGE_CODES,
    FileProbe,
    content_digest,
    probe_file,
    read_image,
    read_mask,
)
from lesionaug.dataset.label_join import join_label_tables
from lesionaug.dataset.label_tables import read_label_tables
from lesionaug.dataset.labels import Labels
from lesionaug.dataset.layouts import LAYOUT_TABLE, LAYOUTS, detect_layout
from lesionaug.dataset.layouts.pairing import apply_external_masks
from lesionaug.dataset.layouts.records import (
    SPLITS,
    Candidate,
    LabelFile,
    LayoutSpec,
    Problem,
    Sample,
)
from lesionaug.dataset.layouts.tree import scan_tree
from lesionaug.errors import DatasetError
from lesionaug.formats import MANIFEST_NAME
from lesionaug.progress import SILENT, Reporter

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test for seeded splits

__all__ = [
    "LAYOUTS",
    "DatasetIndex",
    "LabelFile",
    "LayoutSpec",
    "Problem",
    "Sample",
    "load_dataset",
    "problems_error",
    "read_image",
    "read_mask",
    "seeded_split",
]


def seeded_split(key: str, seed: int) -> str:
    """'train', 'val' or 'test' for a sample key: a hash of (seed, key) against SPLIT_FRACTIONS."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")
    u = h / 2**64
    if u < SPLIT_FRACTIONS[0]:
        return "train"
    return "val" if u < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1] else "test"


def _sample_digest(sample_id: str, image: str, mask: str, labels: Labels) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in (sample_id, image, mask, json.dumps(labels.to_dict(), sort_keys=True)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _combine(digests: Iterable[tuple[str, str]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for sample_id, digest in sorted(digests):
        h.update(f"{sample_id}\0{digest}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class DatasetIndex:
    """Everything known about a dataset folder after indexing (immutable)."""

    layout: str
    root: Path
    samples: tuple[Sample, ...]
    problems: tuple[Problem, ...]
    fingerprint: str
    split_source: str  # "folders" or "seeded(seed=N)"
    spec: LayoutSpec
    exif_oriented: tuple[tuple[str, int], ...] = ()  # (path, EXIF orientation) of files read turned upright
    label_tables: tuple[dict, ...] = field(default=(), compare=False)  # --labels: path, format, rows, matched, unknown

    @property
    def real(self) -> list[Sample]:
        return [s for s in self.samples if not s.synthetic]

    @property
    def synthetic(self) -> list[Sample]:
        """The pairs ``lesionaug augment`` added, in job order."""
        return sorted((s for s in self.samples if s.synthetic), key=lambda s: (s.source.get("job_index", 0), s.id))

    def usable(self, split: str | None = None) -> list[Sample]:
        """Samples with a mask and no problem, optionally of one split ('train', 'val', 'test')."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        bad = {p.sample_id for p in self.problems if p.sample_id is not None}
        return [
            s for s in self.samples if s.mask is not None and s.id not in bad and (split is None or s.split == split)
        ]

    def left_out(self, split: str) -> dict[str, int]:
        """Samples of ``split`` that ``usable`` leaves out, counted by their first problem's code."""
        first: dict[str, str] = {}
        for p in self.problems:
            if p.sample_id is not None:
                first.setdefault(p.sample_id, p.code)
        reasons = Counter(
            first.get(s.id, "missing_mask")
            for s in self.samples
            if s.split == split and (s.mask is None or s.id in first)
        )
        return dict(sorted(reasons.items()))

    def split_counts(self) -> dict[str, int]:
        return {split: sum(1 for s in self.samples if s.split == split) for split in SPLITS}

    def subset_fingerprint(self, samples: Iterable[Sample]) -> str:
        """Content fingerprint of a subset (e.g. the training split), independent of order."""
        pairs = []
        for s in samples:
            digest = s.digest
            if not digest:
                mask = content_digest(s.mask) if s.mask is not None else ""
                digest = _sample_digest(s.id, content_digest(s.image), mask, s.labels)
            pairs.append((s.id, digest))
        return _combine(pairs)

    @property
    def damaged(self) -> list[Problem]:
        """Problems that mean a file is unreadable, corrupt, truncated or too large."""
        return [p for p in self.problems if p.code in DAMAGE_CODES]

    def check(self, strict: bool = False) -> None:
        """Raise DatasetError for damaged files (always) or for any problem (``strict``)."""
        error = problems_error(self.root, self.problems, strict)
        if error is not None:
            raise error


def problems_error(root: Path, problems: Iterable[Problem], strict: bool) -> DatasetError | None:
    """The one-line error for damaged files (or, when ``strict``, any problem); None when there is none."""
    problems = list(problems)
    bad = problems if strict else [p for p in problems if p.code in DAMAGE_CODES]
    if not bad:
        return None
    first = bad[0]
    kind = "problem(s), and --strict is set" if strict else "damaged file(s)"
    return DatasetError(
        f"{len(bad)} {kind}; first: {first.code} {first.path}: {first.message}",
        path=root,
        fix="fix them, or drop --strict to skip those samples with a warning"
        if strict
        else "re-download, repair or delete those files",
    )


def _check_folder(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists() and not p.is_symlink():
        raise DatasetError(f"{what} does not exist", path=p, fix="check the path")
    try:
        if p.is_file():
            if zipfile.is_zipfile(p) or p.suffix.lower() in (".zip", ".tar", ".gz", ".tgz", ".7z"):
                raise DatasetError(f"{what} is an archive, not a folder", path=p, fix="extract it and pass the folder")
            raise DatasetError(f"{what} is a file, not a folder", path=p, fix="pass the folder that holds the images")
        if not p.is_dir():
            raise DatasetError(f"{what} is not a folder", path=p, fix="pass the folder that holds the images")
        return p.resolve()
    except OSError as exc:
        raise DatasetError(
            f"{what} cannot be opened ({exc.strerror})", path=p, fix="check the path and its permissions"
        ) from None


def _probe_candidate(c: Candidate, problems: list[Problem], missing_hint: str) -> tuple[FileProbe, FileProbe | None]:
    image = probe_file(c.image)
    if image.problem:
        problems.append(Problem(image.problem[0], str(c.image), image.problem[1], sample_id=c.id))
    mask = probe_file(c.mask) if c.mask is not None else None
    if mask is not None and mask.problem:
        problems.append(Problem(mask.problem[0], str(c.mask), mask.problem[1], sample_id=c.id))
    if c.mask is None:
        problems.append(Problem("missing_mask", str(c.image), f"image has no mask{missing_hint}", sample_id=c.id))
    elif image.size and mask is not None and mask.size and image.size != mask.size:
        msg = f"image is {image.size[0]}x{image.size[1]} but its mask {c.mask.name} is {mask.size[0]}x{mask.size[1]}"
        problems.append(Problem("size_mismatch", str(c.image), msg, sample_id=c.id))
    return image, mask


def synthetic_entries(root: Path) -> dict[str, tuple[int, Labels]]:
    """The pairs ``lesionaug augment`` added to this folder (its manifest): id -> (job index, labels).

    Read leniently: a line that is not a whole JSON object naming an id is skipped (``verify``
    reports it); a later line for the same id wins, as in the manifest itself.
    """
    entries: dict[str, tuple[int, Labels]] = {}
    try:
        lines = (Path(root) / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return entries
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        labels = entry.get("labels")
        try:
            parsed = Labels.from_dict(labels) if isinstance(labels, dict) else Labels()
        except (TypeError, ValueError, AttributeError):
            parsed = Labels()
        index = entry.get("index")
        entries[entry["id"]] = (index if isinstance(index, int) else len(entries), parsed)
    return entries


def load_dataset(
    path: str | Path,
    masks: str | Path | None = None,
    split_seed: int = 0,
    *,
    labels: Sequence[str | Path] = (),
    reporter: Reporter = SILENT,
) -> DatasetIndex:
    """Detect the layout of ``path`` and index it; ``masks`` overrides where masks are read from,
    ``labels`` are external label tables joined by image id (``--labels``)."""
    # 1. Check the inputs (label tables first: a wrong --labels fails before any folder is listed).
    tables = read_label_tables(labels)
    root = _check_folder(path, "dataset folder")
    masks_dir = _check_folder(masks, "masks folder") if masks is not None else None
    try:
        tree = scan_tree(root)
    except OSError as exc:
        raise DatasetError(
            f"cannot list the dataset folder ({exc.strerror})", path=root, fix="check its permissions"
        ) from None
    if tree.n_files == 0:
        raise DatasetError("dataset folder is empty", path=root, fix="pass the folder that holds the images and masks")

    # 2. Detect the layout and read it.
    layout = detect_layout(tree)
    if layout is None:
        looked = "; ".join(f"{entry.name} ({entry.recognised_by})" for entry in LAYOUT_TABLE)
        raise DatasetError(
            f"no known dataset layout found; looked for {looked}",
            path=root,
            fix="put images and masks in sibling folders named images/ and masks/",
        )
    read = layout.read(tree)
    problems = list(tree.problems) + read.problems
    spec = read.spec
    if masks_dir is not None:
        suffix = apply_external_masks(read.candidates, masks_dir, problems)
        rel = os.path.relpath(masks_dir, root) if masks_dir.is_relative_to(root) else str(masks_dir)
        spec = replace(spec, mask_dir=rel, mask_suffix=suffix, mask_template=f"{rel}/{{id}}{suffix}")
    if not read.candidates:
        raise DatasetError(
            f"found the {read.layout} layout but no images in it", path=root, fix="check that the images were extracted"
        )

    # 3. Labels: synthetic pairs get theirs from the manifest; real samples get the tables joined.
    synthetic = synthetic_entries(root)
    table_summaries = _apply_labels(read.candidates, synthetic, tables, spec)
    _report_tables(table_summaries, reporter)

    # 4. Read headers and hash contents; record problems per file.
    folder_splits = {c.split for c in read.candidates if c.split is not None}
    use_folders = len(folder_splits) >= 2
    split_source = "folders" if use_folders else f"seeded(seed={split_seed})"
    oriented: list[tuple[str, int]] = []  # (path, EXIF orientation) of files read turned upright
    samples = _index_candidates(
        read.candidates, set(synthetic), spec, use_folders, split_seed, problems, oriented, reporter
    )

    # 5. Fingerprint the content.
    fingerprint = _combine((s.id, s.digest) for s in samples)
    return DatasetIndex(
        layout=read.layout,
        root=root,
        samples=tuple(samples),
        problems=tuple(problems),
        fingerprint=fingerprint,
        split_source=split_source,
        spec=spec,
        exif_oriented=tuple(oriented),
        label_tables=tuple(table_summaries),
    )


def _apply_labels(candidates: list[Candidate], synthetic: dict, tables: list, spec: LayoutSpec) -> list[dict]:
    """Manifest labels onto the synthetic pairs, label tables onto the rest; the tables' summaries."""
    for c in candidates:
        if c.id in synthetic:
            c.source["job_index"], c.labels = synthetic[c.id]
    own = ", ".join(f.path for f in spec.label_files) or "the dataset's own labels"
    return join_label_tables([c for c in candidates if c.id not in synthetic], tables, own)


def _index_candidates(
    candidates: list[Candidate],
    synthetic: set[str],
    spec: LayoutSpec,
    use_folders: bool,
    split_seed: int,
    problems: list[Problem],
    oriented: list[tuple[str, int]],
    reporter: Reporter,
) -> list[Sample]:
    """Each candidate probed, split and digested into a ``Sample`` (duplicates and problems recorded)."""
    missing_hint = "" if spec.mask_template else " (this layout has no masks: pass --masks DIR)"
    seen: set[str] = set()
    samples: list[Sample] = []
    with reporter.task("indexing", total=len(candidates)) as task:
        for c in candidates:
            task.advance()
            if c.id in seen:
                problems.append(Problem("duplicate_id", str(c.image), f"a second image with id {c.id}; skipped"))
                continue
            seen.add(c.id)
            image, mask = _probe_candidate(c, problems, missing_hint)
            oriented += [(str(path), probe.orientation) for path, probe in ((c.image, image), (c.mask, mask))
                         if probe is not None and probe.orientation != 1]
            group = dict(c.labels.extra).get("lesion_id") or c.id
            split = c.split if use_folders and c.split else seeded_split(group, split_seed)
            if c.id in synthetic:
                split = "train"  # pairs added by `augment` are training data, never val or test
            digest = _sample_digest(c.id, image.digest, mask.digest if mask else "", c.labels)
            size = image.size or (0, 0)
            samples.append(
                Sample(c.id, c.image, c.mask, split, c.labels, size, dict(c.source), digest, c.id in synthetic)
            )
    return samples


def _report_tables(summaries: list[dict], reporter: Reporter) -> None:
    """One warning per table that labels nothing here or holds values without a prompt equivalent."""
    for table in summaries:
        if table["matched"] == 0:
            reporter.warn(
                f"--labels {table['path']}: none of its {table['rows']} rows names an image of this dataset "
                "(ISIC 2018 Task 3 / HAM10000 ids ISIC_0024306.. label no Task 1 image; use an ISIC Archive "
                "metadata export or the ISIC 2019 ground truth)"
            )
        unknown = table["unknown_values"]
        if unknown:
            n = sum(sum(values.values()) for values in unknown.values())
            shown = ", ".join(
                f'{column} "{value}" ({count})' for column, values in unknown.items() for value, count in values.items()
            )
            reporter.warn(
                f"--labels {table['path']}: {n} value(s) with no equivalent in the prompt vocabulary were left "
                f"out (see docs/label-tables.md): {shown[:300]}"
            )
