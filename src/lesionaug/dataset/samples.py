"""``lesionaug.open_dataset(path)``: a dataset folder's samples for your own code, labels and synthetic flag included.

    import lesionaug

    samples = lesionaug.open_dataset("isic-augmented", labels=["metadata.csv"])
    for s in samples:
        s.id, s.split, s.synthetic          # "SYN_0000001", "train", True
        s.labels.diagnosis, s.labels.attributes, s.labels.site, s.labels.age, s.labels.sex
        image = lesionaug.read_image(s.image)   # uint8 (H, W, 3)
        mask = lesionaug.read_mask(s.mask)      # bool (H, W), the DATASETS.md binarisation rule

Any layout ``lesionaug info`` reads; an augmented folder's synthetic pairs come with the labels they
were generated from. Only usable samples are returned (an image with a mask and no problem), in the
folder's order; damaged files raise ``DatasetError`` as every command does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lesionaug.dataset.index import Sample, load_dataset
from lesionaug.dataset.layouts.records import SPLITS
from lesionaug.progress import SILENT, Reporter


def open_dataset(
    path: str | Path,
    *,
    labels: Sequence[str | Path] = (),
    masks: str | Path | None = None,
    split_seed: int = 0,
    split: str | None = None,
    synthetic: bool | None = None,
    reporter: Reporter = SILENT,
) -> list[Sample]:
    """The usable samples of a folder: all, one ``split`` ('train', 'val', 'test'), and only real
    (``synthetic=False``) or only synthetic (``synthetic=True``) ones when asked."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    index = load_dataset(path, masks, split_seed, labels=labels, reporter=reporter)
    index.check()
    return [s for s in index.usable(split) if synthetic is None or s.synthetic == synthetic]
