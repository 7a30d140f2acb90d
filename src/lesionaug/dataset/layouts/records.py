"""The records a dataset index is made of: samples, problems, and the layout spec writers follow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lesionaug.dataset.labels import Labels

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file or label row; ``code`` is a stable identifier.

    Codes: missing_mask, orphan_mask, orphan_label, size_mismatch, duplicate_id, unreadable, corrupt,
    truncated, too_large, symlink_loop, symlink_outside (indexing); non_binary_mask, empty_mask
    (``info``, reads pixels).
    ``sample_id`` names the sample the problem makes unusable, if any.
    """

    code: str
    path: str
    message: str
    sample_id: str | None = None

    def as_dict(self) -> dict:
        return {"code": self.code, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class Sample:
    """One image with its mask (if any), split, normalised labels and header size (width, height).

    ``source`` holds layout-specific extras (all JSON-ready): ``label_row`` (the raw row of the layout's
    label file) or ``label_rows`` (file -> row, when several files are joined), ``attribute_masks``
    (ISIC 2018 Task 2: attribute -> mask path), ``superpixels`` and ``features`` (ISIC 2017 Part 2
    paths; see ``layouts.isic_challenge.rasterise_features``), ``roi`` (PH2 colour ROI mask paths),
    ``license`` (ISIC Archive ``copyright_license``), ``label_tables`` (the ``--labels`` files that
    labelled it), ``job_index`` (a synthetic pair's index in its generation plan).
    """

    id: str
    image: Path
    mask: Path | None
    split: str
    labels: Labels
    size: tuple[int, int]
    source: dict = field(default_factory=dict, compare=False)
    digest: str = field(default="", compare=False)  # content hash of image + mask + labels
    synthetic: bool = False  # a pair `lesionaug augment` added (listed in the folder's manifest)


@dataclass(frozen=True)
class LabelFile:
    """A label file of the layout: where it is (relative to the root) and how it is written.

    Formats: isic2016_csv (headerless id,benign|malignant|0.0|1.0), isic2017_part3
    (image_id,melanoma,seborrheic_keratosis), isic2017_metadata (image_id,age_approximate,sex),
    isic2018_task3 (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC one-hot), ham10000_metadata
    (lesion_id,image_id,dx,dx_type,age,sex,localization), ph2_txt (``||``-separated rows),
    isic_archive_metadata (isic_id,...), labels_csv (generic, keyed by ``key``).
    """

    path: str
    format: str
    key: str = ""
    columns: tuple[str, ...] = ()
    split: str | None = None  # the split whose rows it holds, where the file name says so


@dataclass(frozen=True)
class LayoutSpec:
    """What a writer needs to add new pairs to a dataset in its own layout.

    ``image_template`` and ``mask_template`` are paths relative to the dataset root with an ``{id}``
    field, for the training split (e.g. ``ISIC2018_Task1-2_Training_Input/{id}.jpg`` and
    ``ISIC2018_Task1_Training_GroundTruth/{id}_segmentation.png``). ``image_dir``/``mask_dir`` are the
    folders those files go in, ``mask_suffix`` what follows the id in a mask's name (with extension),
    ``image_ext`` the images' extension. ``label_files`` lists the label files rows are added to.
    ``attribute_template`` is set where the layout keeps per-attribute masks (``{id}`` and ``{attribute}``).
    With ``masks=`` pointing outside the root, ``mask_dir`` and ``mask_template`` are absolute paths.
    """

    layout: str
    image_dir: str
    mask_dir: str | None
    image_ext: str
    mask_suffix: str
    image_template: str
    mask_template: str | None
    label_files: tuple[LabelFile, ...] = ()
    attribute_template: str | None = None

    def label_file(self, format: str, split: str = "train") -> LabelFile | None:
        """The label file of a format holding ``split``'s rows (or one with no split), if any."""
        files = [f for f in self.label_files if f.format == format]
        return next((f for f in files if f.split == split), next((f for f in files if f.split is None), None))

    def image_path(self, root: Path, sample_id: str) -> Path:
        return Path(root) / self.image_template.format(id=sample_id)

    def mask_path(self, root: Path, sample_id: str) -> Path | None:
        return Path(root) / self.mask_template.format(id=sample_id) if self.mask_template else None

    def as_dict(self) -> dict:
        return {
            "layout": self.layout,
            "image_dir": self.image_dir,
            "mask_dir": self.mask_dir,
            "image_ext": self.image_ext,
            "mask_suffix": self.mask_suffix,
            "image_template": self.image_template,
            "mask_template": self.mask_template,
            "attribute_template": self.attribute_template,
            "label_files": [
                {"path": f.path, "format": f.format, "key": f.key, "columns": list(f.columns), "split": f.split}
                for f in self.label_files
            ],
        }


@dataclass
class Candidate:
    """A sample as a layout reader finds it, before headers are read. ``split`` None: seeded later."""

    id: str
    image: Path
    mask: Path | None
    split: str | None
    labels: Labels = field(default_factory=Labels)
    source: dict = field(default_factory=dict)


@dataclass
class LayoutRead:
    """What one layout reader returns."""

    layout: str
    candidates: list[Candidate]
    spec: LayoutSpec
    problems: list[Problem] = field(default_factory=list)
