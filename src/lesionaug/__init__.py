"""lesionaug: augment skin-lesion segmentation datasets with mask-conditioned ControlNet generation.

For your own code: ``lesionaug.open_dataset(path)`` returns a folder's samples with their labels and
synthetic flag; ``lesionaug.read_image`` and ``lesionaug.read_mask`` decode their files
(``dataset/samples.py``). They load on first use, so ``import lesionaug`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__release_date__ = "2026-12-03"  # of this version; the man page carries it (scripts/gen_docs.py)
__all__ = ["__version__", "open_dataset", "read_image", "read_mask"]


def __getattr__(name: str) -> Any:
    if name == "open_dataset":
        from lesionaug.dataset.samples import open_dataset

        return open_dataset
    if name in ("read_image", "read_mask"):
        from lesionaug.dataset import files

        return getattr(files, name)
    raise AttributeError(f"module 'lesionaug' has no attribute {name!r}")
