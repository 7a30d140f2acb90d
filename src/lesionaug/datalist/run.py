"""``lesionaug datalist``: a folder written in one of the formats other segmentation stacks load.

    write_datalist(DatalistOptions(Path("isic-augmented"), "monai", synthetic=1000, real_fraction=0.25))

The datalist folder appears whole or not at all (written under a temporary name beside it, then
renamed); a folder that holds an earlier datalist (its ``.lesionaug-datalist.json``) is replaced,
any other non-empty folder is refused, and the dataset folder is only read.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from lesionaug import __version__
from lesionaug.atomic_files import replace_folder
from lesionaug.datalist.hf_folder import write_hf
from lesionaug.datalist.lists import write_csv, write_monai
from lesionaug.datalist.nnunet_raw import write_nnunet
from lesionaug.datalist.selection import DatalistOptions, Selection, select_samples
from lesionaug.dataset.index import load_dataset
from lesionaug.errors import ConfigError
from lesionaug.formats import DATALIST_MARKER
from lesionaug.progress import SILENT, Reporter


def check_target(target: Path) -> None:
    """Refuse a file, or a non-empty folder that is not an earlier datalist."""
    if target.exists() and not target.is_dir():
        raise ConfigError("the datalist path is a file", path=target, fix="pass a folder to --out")
    if target.is_dir() and any(target.iterdir()) and not (target / DATALIST_MARKER).is_file():
        raise ConfigError(
            "the datalist folder is not empty and holds no earlier datalist",
            path=target,
            fix="choose a new --out, or empty this folder",
        )


def write_format(options: DatalistOptions, selection: Selection, tmp: Path, final: Path, reporter: Reporter) -> Path:
    """Write the chosen format into ``tmp``; the path of its main file (or folder) once renamed."""
    name = Path(options.folder).resolve().name
    if options.format == "monai":
        return write_monai(selection, tmp, final, name)
    if options.format == "csv":
        return write_csv(selection, tmp, final)
    if options.format == "nnunet":
        return final / write_nnunet(selection, tmp, name, reporter, workers=min(8, os.cpu_count() or 1)).name
    write_hf(selection, tmp, reporter)
    return final


def notes_for(options: DatalistOptions, selection: Selection, final: Path) -> list[str]:
    notes = []
    if options.synthetic is not None and options.synthetic > selection.n_synthetic_available:
        notes.append(
            f"asked for {options.synthetic} synthetic pairs; {selection.n_synthetic_available} exist, so capped there"
        )
    if options.format == "nnunet" and not final.name.startswith("Dataset"):
        notes.append(
            "nnU-Net finds raw datasets named DatasetXXX_NAME in $nnUNet_raw: rename the folder "
            "(e.g. --out $nnUNet_raw/Dataset501_ISIC)"
        )
    return notes


def write_datalist(options: DatalistOptions, reporter: Reporter = SILENT) -> dict:
    """Index the folder, choose the lists, write the format atomically; returns the ``--json`` data."""
    # 1. Check the inputs and the target before writing anything.
    final = options.target().expanduser().absolute()
    check_target(final)
    index = load_dataset(
        options.folder, options.masks, options.split_seed, labels=options.labels, reporter=reporter
    )
    index.check()
    selection = select_samples(index, options)

    # 2. Write beside the target, then swap it in.
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        main = write_format(options, selection, tmp, final, reporter)
        record = {"tool": "lesionaug datalist", "version": __version__, "options": options.to_dict(),
                  "counts": selection.counts(), "fingerprint": index.fingerprint}
        (tmp / DATALIST_MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        replace_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    notes = notes_for(options, selection, final)
    for note in notes:
        reporter.warn(note)
    return {
        "out": str(final),
        "format": options.format,
        "path": str(main),
        "counts": selection.counts(),
        "layout": index.layout,
        "fingerprint": index.fingerprint,
        "notes": notes,
    }
