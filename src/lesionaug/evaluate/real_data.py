"""The real pairs an evaluation's segmenters train on, and the check that the generator saw no others.

A "+synthetic" segmenter learns from the synthetic pairs whatever their generator learned. When the
generator (or the shape model and label sampler its masks and prompts came from) saw real training
pairs the real-only baseline does not get, the comparison credits synthetic data with real data it
never shows. ``check_generator_real_data`` refuses that unless ``--allow-generator-extra-data`` is
given, and then the report says at its top how many extra real pairs the generator saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lesionaug.dataset.subsets import RealSubset
from lesionaug.errors import ConfigError
from lesionaug.output.synthetic_pairs import SyntheticSource


@dataclass(frozen=True)
class RealDataCheck:
    """What the generator saw beyond the segmenters' real pairs."""

    extra_ids: tuple[str, ...]  # real pairs the generator or its masks/labels saw and the baseline does not get
    checked: bool  # False when the generator's training ids are unknown
    note: str

    @property
    def extra(self) -> int:
        return len(self.extra_ids)


def _subset_words(subset: RealSubset | None, n_real: int, n_split: int) -> str:
    if subset is None:
        return f"the whole training split, {n_real} pairs"
    return f"{n_real} of the split's {n_split}, {subset.option()}"


def check_generator_real_data(
    source: SyntheticSource,
    real_ids: Iterable[str],
    subset: RealSubset | None,
    n_split: int,
    *,
    allow_extra: bool,
) -> RealDataCheck:
    """Compare the generator's training ids (and the plan's fitted ids) with the segmenters' real ids."""
    real = set(real_ids)
    if source.train_ids is None:
        return RealDataCheck((), False, "which real pairs the generator saw is unknown, so hidden real data cannot "
                             "be ruled out")
    generator_extra = set(source.train_ids) - real
    plan_extra = set(source.plan_ids or ()) - real
    extra = tuple(sorted(generator_extra | plan_extra))
    seen = _subset_words(subset, len(real), n_split)
    if not extra:
        plan_words = (
            "; its masks and labels were fitted on the same pairs" if source.plan_ids is not None
            else "; the run record does not list the pairs its masks were fitted on (older lesionaug)"
        )
        return RealDataCheck((), True, f"no hidden real data: the generator's {len(source.train_ids)} training pairs "
                             f"are among the segmenters' real pairs ({seen}){plan_words}")
    option = subset.option() if subset is not None else "--real-fraction or --real-count"
    what = f"{len(extra)} real training pairs the segmenters do not get ({seen})"
    detail = f"generator {len(generator_extra)}, masks and labels {len(plan_extra)}"
    if not allow_extra:
        raise ConfigError(
            f"the generator of the synthetic pairs saw {what}: the +synthetic arm would carry hidden real data "
            f"({detail})",
            path=source.folder,
            fix=f"make the synthetic pairs from the same real pairs: pass {option} (and the same --split-seed) to "
            "`lesionaug augment` (or `lesionaug train`), or pass --allow-generator-extra-data to run anyway",
        )
    return RealDataCheck(extra, True, f"the generator saw {what} ({detail}); run with --allow-generator-extra-data, "
                         "so a gain may come from those pairs rather than from synthesis")


__all__ = ["RealDataCheck", "check_generator_real_data"]
