"""Dataset layouts: detection (DATASETS.md's table, top to bottom, first match wins) and one reader each."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from lesionaug.dataset.layouts.generic import (
    detect_isic_archive,
    detect_paired,
    detect_paired_split,
    read_isic_archive,
    read_paired,
    read_paired_split,
)
from lesionaug.dataset.layouts.ham10000 import detect_ham10000, read_ham10000
from lesionaug.dataset.layouts.isic_challenge import (
    detect_isic2016,
    detect_isic2017,
    detect_isic2018_task1,
    detect_isic2018_task3,
    read_isic2016,
    read_isic2017,
    read_isic2018_task1,
    read_isic2018_task3,
)
from lesionaug.dataset.layouts.ph2 import detect_ph2, read_ph2
from lesionaug.dataset.layouts.records import LayoutRead
from lesionaug.dataset.layouts.tree import Tree


class Layout(NamedTuple):
    name: str
    recognised_by: str
    detect: Callable[[Tree], bool]
    read: Callable[[Tree], LayoutRead]


# Order matters: the first layout whose detector matches reads the folder.
LAYOUT_TABLE: tuple[Layout, ...] = (
    Layout("ph2", "folder 'PH2 Dataset images' or IMD###/IMD###_Dermoscopic_Image/", detect_ph2, read_ph2),
    Layout("isic2018_task1", "folder ISIC2018_Task1-2_*_Input", detect_isic2018_task1, read_isic2018_task1),
    Layout("isic2017", "folder ISIC-2017_*_Data", detect_isic2017, read_isic2017),
    Layout("isic2016", "folder ISBI2016_ISIC_Part1_* or ISBI2016_ISIC_Part3B_*", detect_isic2016, read_isic2016),
    Layout("ham10000", "HAM10000_metadata.csv or folder HAM10000_images_part_*", detect_ham10000, read_ham10000),
    Layout("isic2018_task3", "folder ISIC2018_Task3_*_Input", detect_isic2018_task3, read_isic2018_task3),
    Layout("isic_archive", "metadata.csv whose first column is isic_id", detect_isic_archive, read_isic_archive),
    Layout("paired_split", "{train,val,test}/{images,masks} folders", detect_paired_split, read_paired_split),
    Layout("paired", "sibling images/ and masks/ folders", detect_paired, read_paired),
)

LAYOUTS: tuple[str, ...] = tuple(layout.name for layout in LAYOUT_TABLE)


def detect_layout(tree: Tree) -> Layout | None:
    """The first layout in ``LAYOUT_TABLE`` that recognises the folder, or None."""
    for layout in LAYOUT_TABLE:
        if layout.detect(tree):
            return layout
    return None
