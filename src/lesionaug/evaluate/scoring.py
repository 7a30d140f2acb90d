"""Score a folder of predicted masks against a folder of true masks, ISIC Task 1 style.

Files are paired by id whatever their naming: an ISIC id (``ISIC_1234567``) anywhere in the name
wins; otherwise the stem with mask suffixes (``_segmentation``, ``_mask``, ``_pred``, ...) stripped,
compared case-insensitively. Masks are binarised by the DATASETS.md rule, so 0/1 masks are read as
masks and not as empty ones (the official scorer's trap). Files that cannot be paired are listed;
pairs that cannot be scored (size mismatch, unreadable file) are listed as problems and left out
of the macro average.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lesionaug.dataset.files import read_mask
from lesionaug.errors import DatasetError, LesionaugError
from lesionaug.evaluate.metrics import MaskScores, macro_average, score_masks
from lesionaug.progress import SILENT, Reporter

ISIC_ID = re.compile(r"ISIC_\d{7}", re.IGNORECASE)
MASK_SUFFIX = re.compile(r"[_\-.](segmentation|mask|seg|lesion|label|gt|pred|prediction)$", re.IGNORECASE)
MASK_FILE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
IGNORED_NAMES = frozenset({".ds_store", "attribution.txt", "license.txt"})
MAX_DEPTH = 3  # mirrors double-nest folders (X/X/); deeper trees are not mask folders


def display_id(path: Path) -> str:
    """A mask file's id as written: the ISIC id in its name, else its stem without mask suffixes."""
    found = ISIC_ID.search(path.name)
    if found:
        return found.group(0).upper()
    stem = path.stem
    while True:
        stripped = MASK_SUFFIX.sub("", stem)
        if stripped == stem or not stripped:
            return stem
        stem = stripped


def mask_id(path: Path) -> str:
    """The id a mask file is paired by (case-insensitive)."""
    return display_id(path).casefold()


def find_mask_files(root: Path) -> list[Path]:
    """Image files under ``root`` (to ``MAX_DEPTH`` levels), skipping OS litter and superpixel maps."""
    found: list[Path] = []
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX" and not d.startswith(".") and depth < MAX_DEPTH)
        for name in sorted(filenames):
            lower = name.lower()
            if name.startswith("._") or lower in IGNORED_NAMES or lower.endswith("_superpixels.png"):
                continue
            if Path(lower).suffix in MASK_FILE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found


@dataclass(frozen=True)
class ImageScore:
    id: str
    truth: Path
    prediction: Path
    scores: MaskScores

    def to_dict(self) -> dict:
        return {"id": self.id, **self.scores.to_dict()}


@dataclass
class ScoreReport:
    """Per-image scores, their macro average, and what could not be scored."""

    per_image: list[ImageScore]
    macro: MaskScores
    unmatched: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "macro": self.macro.to_dict(),
            "per_image": [row.to_dict() for row in self.per_image],
            "unmatched": self.unmatched,
            "problems": self.problems,
        }


def _index(files: list[Path], side: str, unmatched: list[dict]) -> dict[str, Path]:
    """id -> file; ids claimed by two files of one folder are ambiguous and go to ``unmatched``."""
    by_id: dict[str, list[Path]] = {}
    for path in files:
        by_id.setdefault(mask_id(path), []).append(path)
    out: dict[str, Path] = {}
    for key, paths in by_id.items():
        if len(paths) == 1:
            out[key] = paths[0]
        else:
            for path in paths:
                reason = f"{len(paths)} {side} files share the id {key}"
                unmatched.append({"side": side, "path": str(path), "reason": reason})
    return out


def _check_folder(path: Path, what: str) -> list[Path]:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(
            f"the {what} folder does not exist", path=path, fix=f"pass an existing folder of {what} masks"
        )
    files = find_mask_files(path)
    if not files:
        raise DatasetError(f"no mask files in the {what} folder", path=path, fix="pass a folder of PNG/JPEG/BMP masks")
    return files


def score_folders(truth_dir: Path, prediction_dir: Path, reporter: Reporter = SILENT) -> ScoreReport:
    """Pair and score every mask of ``prediction_dir`` against ``truth_dir``."""
    truth_files = _check_folder(truth_dir, "truth")
    prediction_files = _check_folder(prediction_dir, "prediction")
    unmatched: list[dict] = []
    truths = _index(truth_files, "truth", unmatched)
    predictions = _index(prediction_files, "prediction", unmatched)
    for key in sorted(truths.keys() - predictions.keys()):
        unmatched.append({"side": "truth", "path": str(truths[key]), "reason": "no prediction with this id"})
    for key in sorted(predictions.keys() - truths.keys()):
        unmatched.append({"side": "prediction", "path": str(predictions[key]), "reason": "no truth with this id"})
    keys = sorted(truths.keys() & predictions.keys())
    if not keys:
        raise DatasetError(
            f"no prediction pairs with a truth mask ({len(truths)} truth, {len(predictions)} prediction ids)",
            path=prediction_dir,
            fix="name predictions after their images (e.g. ISIC_0000000_segmentation.png or <stem>_pred.png)",
        )

    rows: list[ImageScore] = []
    problems: list[dict] = []
    with reporter.task("scoring", total=len(keys)) as task:
        for key in keys:
            truth_path, prediction_path = truths[key], predictions[key]
            image_id = display_id(truth_path)
            problem = {"id": image_id, "truth": str(truth_path), "prediction": str(prediction_path)}
            try:
                truth, prediction = read_mask(truth_path), read_mask(prediction_path)
            except LesionaugError as exc:
                problems.append({**problem, "reason": exc.one_line()})
            else:
                if truth.shape == prediction.shape:
                    rows.append(ImageScore(image_id, truth_path, prediction_path, score_masks(truth, prediction)))
                else:
                    (th, tw), (ph, pw) = truth.shape, prediction.shape
                    problems.append({**problem, "reason": f"size differs: truth {tw}x{th}, prediction {pw}x{ph}"})
            task.advance()
    if not rows:
        raise DatasetError(
            f"none of the {len(keys)} pairs could be scored (first problem: {problems[0]['reason']})",
            path=prediction_dir,
            fix="predict masks at the size of their truth masks",
        )
    for problem in problems:
        reporter.warn(f"{problem['id']}: not scored: {problem['reason']}")
    return ScoreReport(
        per_image=rows, macro=macro_average(r.scores for r in rows), unmatched=unmatched, problems=problems
    )
