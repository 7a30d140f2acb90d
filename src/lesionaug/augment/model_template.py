"""The prompt template of a run: the one given, else the one the ``--model`` was trained with.

A model learns the wording of its training prompts. ``augment --model`` without
``--prompt-template`` therefore writes its prompts in the template of the model's card (a model or
an engine folder), not in the default one. A given template that differs is kept, and one line says
so. A folder without a readable card is left to the model's resolution, which reports it after the
run's cheaper checks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lesionaug.augment.options import AugmentOptions
from lesionaug.cards import find_card
from lesionaug.errors import ModelError, UsageError
from lesionaug.formats import CARD_NAME, ENGINE_FORMAT
from lesionaug.plan.prompts import check_template
from lesionaug.progress import SILENT, Reporter


def trained_template(model: Path) -> str | None:
    """The ``prompt_template`` of a model or engine folder's card; None without a readable card."""
    card = find_card(model)
    if card is None:
        return None
    section = card.get("model") if card.get("format") == ENGINE_FORMAT else card
    template = section.get("prompt_template") if isinstance(section, dict) else None
    return template if isinstance(template, str) and template else None


def with_model_template(options: AugmentOptions, reporter: Reporter = SILENT) -> AugmentOptions:
    """``options`` with the prompts in the words the ``--model`` was trained on (see the module)."""
    model = options.generation.model
    if model is None:
        return options
    path = Path(model).expanduser()
    trained = trained_template(path)
    if trained is None or trained == options.plan.template:
        return options
    if options.template_from_user:
        reporter.warn(f"the model was trained with the prompt template {trained!r}; these prompts use "
                      f"{options.plan.template!r} (drop --prompt-template to use the model's)")
        return options
    try:
        check_template(trained)
    except UsageError as exc:  # read from the model's card: a bad file, not a bad option
        raise ModelError(f"its card's prompt template: {exc.message}", path=path / CARD_NAME,
                         fix="train the model again, or pass --prompt-template") from None
    return dataclasses.replace(options, plan=dataclasses.replace(options.plan, template=trained))
