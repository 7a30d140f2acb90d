"""Options every command that reads a dataset shares: where masks are, the split seed, and the
real training subset. One declaration each, so help, config keys and environment names agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MasksDirOpt = Annotated[
    Path | None, typer.Option("--masks", help="Folder of masks, for layouts without them (ISIC Archive).")
]
SplitSeedOpt = Annotated[
    int, typer.Option("--split-seed", help="Seed of the split when folders give none (and of the real subset "
                      "where --real-fraction or --real-count is taken).")
]
# train, augment and evaluate take the same two options, so the generator and the segmenters can be
# given exactly the same real training pairs (dataset/subsets.py chooses them, with the split seed).
RealFractionOpt = Annotated[
    float | None,
    typer.Option(
        "--real-fraction",
        help="Use only this fraction of the training split's real pairs (chosen by the split seed; "
        "the same option on train, augment and evaluate picks the same pairs).",
    ),
]
RealCountOpt = Annotated[
    int | None,
    typer.Option(
        "--real-count",
        help="Use only this many of the training split's real pairs (instead of --real-fraction).",
    ),
]

