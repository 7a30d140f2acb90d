"""Where an augmented copy puts things, from the input's ``LayoutSpec``: pairs, label files, originals.

Synthetic pairs go where the layout keeps its training pairs, named like them (``{id}.jpg`` beside
the training images, ``{id}_segmentation.png`` beside the training masks). Rows are added to the
label files of the training split and to split-less ones (HAM10000 metadata, PH2's table). A mask
folder given with ``--masks`` outside the dataset is mirrored into the output under its own name,
since the output is never allowed to write next to the input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lesionaug.output.folder import LabelTarget, label_target, list_originals
from lesionaug.output.pair_writer import PairLayout

_FORMAT_OF_EXT = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".bmp": "bmp"}


@dataclass(frozen=True)
class OutputPlan:
    """Everything about the output folder that does not depend on the model."""

    layout: PairLayout
    label_targets: tuple[LabelTarget, ...]
    originals: tuple[tuple[Path, str], ...]  # (source file, path relative to the output)
    external_masks: str | None  # the mirrored --masks folder (relative to the output), if any

    def identity(self) -> dict:
        return {
            "image_template": self.layout.image_template,
            "mask_template": self.layout.mask_template,
            "image_format": self.layout.image_format,
            "mask_format": self.layout.mask_format,
            "label_files": [t.path for t in self.label_targets],
            "n_originals": len(self.originals),
        }


def default_image_format(image_ext: str) -> str:
    """The input's own format where lesionaug can write it losslessly or as JPEG; PNG otherwise."""
    return _FORMAT_OF_EXT.get(image_ext.lower(), "png")


def _external(template: str) -> bool:
    p = PurePosixPath(template)
    return p.is_absolute() or ".." in p.parts


def pair_layout(spec, image_format: str | None) -> tuple[PairLayout, str | None]:
    """The writer's layout for ``spec`` (and the mirrored mask folder when masks live outside)."""
    fmt = image_format or default_image_format(spec.image_ext)
    stem, ext = os.path.splitext(spec.image_template)
    image_template = (stem if ext.lower() == spec.image_ext.lower() else spec.image_template) + "{ext}"
    if spec.mask_template is None:
        mask_template, external = "masks/{id}_segmentation.png", None
    else:
        mask_template, external = spec.mask_template, None
        if _external(mask_template):
            folder = PurePosixPath(mask_template).parent
            external = folder.name
            mask_template = f"{external}/{PurePosixPath(mask_template).name}"
    base, mask_ext = os.path.splitext(mask_template)
    mask_format = "bmp" if mask_ext.lower() == ".bmp" else "png"
    if mask_ext.lower() not in (".png", ".bmp"):
        mask_template = base + ".png"  # JPEG or GIF masks in the input: new masks stay lossless
    return PairLayout(image_template, mask_template, fmt, mask_format), external


def rows_go_into(label_file) -> bool:
    """Synthetic pairs are training data: rows go into training-split and split-less label files."""
    return getattr(label_file, "split", None) in (None, "train")


def plan_output(index, image_format: str | None, *, synthetic_only: bool, masks_dir: Path | None = None) -> OutputPlan:
    spec, root = index.spec, Path(index.root)
    layout, external = pair_layout(spec, image_format)
    rewritten = {f.path for f in spec.label_files if rows_go_into(f)}
    targets = tuple(
        label_target(root, f.path, f.format, f.key, synthetic_only=synthetic_only)
        for f in spec.label_files
        if f.path in rewritten and (root / f.path).is_file()
    )
    originals: list[tuple[Path, str]] = []
    if not synthetic_only:
        originals = [(root / rel, rel) for rel in list_originals(root, exclude=rewritten)]
        if external is not None and masks_dir is not None:
            mroot = Path(masks_dir)
            originals += [(mroot / rel, f"{external}/{rel}") for rel in list_originals(mroot, exclude=set())]
    return OutputPlan(layout, targets, tuple(originals), external)
