"""Reading a folder's card, ``lesionaug.json``: the one reader for model and engine folders.

    card = read_card(folder, ENGINE_FORMAT, MODEL_FORMAT)   # either kind, checked
    model = model_card_of(card)                             # an engine card carries its model's card

A card is a JSON object with a ``format`` tag (``formats.py``). Readers that only want to know
whether a folder has a card use ``find_card``, which never raises.
"""

from __future__ import annotations

import json
from pathlib import Path

from lesionaug.errors import ModelError
from lesionaug.formats import CARD_NAME, ENGINE_FORMAT, MODEL_FORMAT

KIND = {MODEL_FORMAT: "model", ENGINE_FORMAT: "engine"}
MAKE = {
    MODEL_FORMAT: "`lesionaug train DATASET --out MODEL_DIR`",
    ENGINE_FORMAT: "`lesionaug export MODEL_DIR --out ENGINE_DIR`",
}


def find_card(folder: str | Path) -> dict | None:
    """The parsed card of ``folder``, or None when it has none or it is not a JSON object."""
    try:
        card = json.loads((Path(folder) / CARD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def read_card(folder: str | Path, *formats: str) -> dict:
    """The card of ``folder``, whose format must be one of ``formats``; a one-line ModelError otherwise."""
    folder = Path(folder)
    what = " or ".join(KIND[f] for f in formats)
    fix = "make one with " + " or ".join(MAKE[f] for f in formats)
    path = folder / CARD_NAME
    if not folder.is_dir():
        raise ModelError(f"{what} folder not found", path=folder, fix=fix)
    if not path.is_file():
        raise ModelError(f"not a lesionaug {what} folder (no {CARD_NAME})", path=folder, fix=fix)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable {what} card ({exc})", path=path, fix=fix) from None
    found = card.get("format") if isinstance(card, dict) else None
    if found not in formats:
        expected = " or ".join(repr(f) for f in formats)
        raise ModelError(f"{what} card format is not {expected} (found {found!r})", path=path,
                         fix=f"{fix}, with this version of lesionaug")
    return card


def model_card_of(card: dict) -> dict:
    """The model's card: the card itself for a model folder, the one an engine card carries."""
    if card.get("format") == ENGINE_FORMAT:
        model = card.get("model")
        return model if isinstance(model, dict) else {}
    return card
