"""Options of ``lesionaug augment``, parsed from the command line into one frozen config.

``AugmentOptions`` holds what the planning half needs (dataset, plan config, shard, dry run) and,
in ``generation``, how the pairs are generated and written. ``AugmentOptions.from_cli`` is the one
place the command's parameter values become that object. Parsing helpers turn option strings
(``--size 640x480``, ``--label-mix balanced``, ``--diagnosis mel=0.5,nv=0.5``) into values and fail
with one line naming the option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionaug.augment.generation_options import GenerationOptions
from lesionaug.dataset.subsets import RealSubset, real_subset_from_options
from lesionaug.errors import UsageError
from lesionaug.plan.jobs import PlanConfig, Shard, parse_shard
from lesionaug.plan.prompts import (
    LABEL_MODES,
    LabelSpec,
    parse_diagnosis_weights,
    parse_label_spec,
)


@dataclass(frozen=True)
class AugmentOptions:
    """What ``lesionaug augment`` was asked to do."""

    dataset: Path
    plan: PlanConfig
    masks: Path | None = None  # mask folder for layouts without masks (ISIC Archive downloads)
    labels: tuple[Path, ...] = ()  # external label tables joined by image id (--labels)
    shard: Shard | None = None
    split_seed: int = 0
    dry_run: bool = False
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    # Only these real training pairs feed the generator, its masks and its labels (None: the whole split).
    real_subset: RealSubset | None = None
    # No --size: the pairs take the dataset's most common image size, settled once it is indexed
    # (augment/output_size.py; until then plan.size is PlanConfig's placeholder). Recorded as asked.
    size_from_dataset: bool = False
    # --prompt-template given: the plan keeps it; otherwise a --model's own template replaces the
    # default once the model's card is read (``augment/model_template.py``).
    template_from_user: bool = False

    @classmethod
    def from_cli(cls, dataset: Path, values: Mapping[str, Any]) -> AugmentOptions:
        """The command's parameter values, by name, as one validated options object.

        Generation fields take the value of the same name (``GenerationOptions.from_values``); the
        planning half maps the few options whose names differ from their fields. Without ``size``
        the pairs take the dataset's size, settled once it is indexed (``augment/output_size.py``).
        """
        if values.get("n") is None:
            raise UsageError("--n is required", fix="pass --n N (or n = N in the --config file)")
        split_seed = values.get("split_seed", 0)
        return augment_options(
            dataset,
            values["n"],
            seed=values.get("seed", 0),
            shard=values.get("shard"),
            template=values.get("prompt_template"),
            labels=values.get("label_mix", "match"),
            diagnosis=values.get("diagnosis"),
            mask_source=values.get("mask_source", "model"),
            size=values.get("size"),
            prefix=values.get("prefix"),
            masks=values.get("masks_dir"),
            label_tables=check_label_tables(values.get("labels")),
            split_seed=split_seed,
            dry_run=values.get("dry_run", False),
            generation=GenerationOptions.from_values(values),
            real_subset=real_subset_from_options(values.get("real_fraction"), values.get("real_count"), split_seed),
        )

    def to_dict(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "masks": str(self.masks) if self.masks else None,
            "labels": [str(p) for p in self.labels],
            "plan": self.plan.to_dict(),
            "shard": self.shard.describe() if self.shard else None,
            "split_seed": self.split_seed,
            "dry_run": self.dry_run,
            "generation": self.generation.to_dict(),
            "real_subset": self.real_subset.to_dict() if self.real_subset else None,
            "size_from_dataset": self.size_from_dataset,
        }


def parse_size(text: str) -> tuple[int, int]:
    """``512`` (square) or ``WxH`` such as ``640x480``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if match is None:
        raise UsageError(f"malformed size {text!r}", fix="use --size 512 or --size 640x480")
    w = int(match.group(1))
    h = int(match.group(2)) if match.group(2) else w
    return w, h


def check_label_tables(values: list[Path] | tuple[Path, ...] | None) -> tuple[Path, ...]:
    """``--labels`` names label tables; a label mix there (its old meaning) says where it went."""
    tables = tuple(values or ())
    for value in tables:
        text = str(value)
        if not Path(value).exists() and (text.lower() in LABEL_MODES or "=" in text):
            raise UsageError(
                f"--labels {text}: --labels now names a label table (a CSV joined by image id)",
                fix=f"choose the diagnoses of the new pairs with --label-mix {text}",
            )
    return tables


def label_spec_from_options(labels: str = "match", diagnosis: str | None = None) -> LabelSpec:
    """Combine ``--label-mix`` (match, balanced or weights) and ``--diagnosis`` (weights)."""
    if diagnosis is None:
        return parse_label_spec(labels)
    if labels.strip().lower() not in ("match", ""):
        raise UsageError(
            f"--label-mix {labels} and --diagnosis {diagnosis} both choose the diagnoses",
            fix="use --diagnosis weights alone, or --label-mix alone",
        )
    return LabelSpec(mode="weights", weights=parse_diagnosis_weights(diagnosis))


def augment_options(
    dataset: Path,
    n: int,
    *,
    seed: int = 0,
    shard: str | None = None,
    template: str | None = None,
    labels: str = "match",
    diagnosis: str | None = None,
    mask_source: str = "model",
    size: str | None = None,
    prefix: str | None = None,
    masks: Path | None = None,
    label_tables: tuple[Path, ...] = (),
    split_seed: int = 0,
    dry_run: bool = False,
    generation: GenerationOptions | None = None,
    real_subset: RealSubset | None = None,
) -> AugmentOptions:
    """Build and validate ``AugmentOptions`` from option strings, before any expensive step.

    Without ``size``, pairs take the dataset's most common image size, never the generator's
    resolution (``augment.output_size.with_dataset_size``, once the dataset is indexed).
    """
    plan_kwargs = {}
    if template is not None:
        plan_kwargs["template"] = template
    if prefix is not None:
        plan_kwargs["prefix"] = prefix
    plan = PlanConfig(
        n=n,
        seed=seed,
        labels=label_spec_from_options(labels, diagnosis),
        mask_source=mask_source,
        **({"size": parse_size(size)} if size is not None else {}),
        **plan_kwargs,
    )
    return AugmentOptions(
        dataset=Path(dataset),
        plan=plan,
        masks=Path(masks) if masks is not None else None,
        labels=tuple(Path(p) for p in label_tables),
        shard=parse_shard(shard) if shard else None,
        split_seed=split_seed,
        dry_run=dry_run,
        generation=generation or GenerationOptions(),
        real_subset=real_subset,
        size_from_dataset=size is None,
        template_from_user=template is not None,
    )


__all__ = [
    "LABEL_MODES",
    "AugmentOptions",
    "augment_options",
    "check_label_tables",
    "label_spec_from_options",
    "parse_size",
]
