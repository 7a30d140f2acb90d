"""Textual prompts: render a lesion's labels into the text the generator is conditioned on, and
draw new label sets for generated pairs (``LabelSampler``).

The template has the fields ``{diagnosis}``, ``{attributes}``, ``{site}``, ``{age}``, ``{sex}``.
Each field renders as a whole clause ("of melanoma", "with pigment network and streaks",
"on the back", "of a 45-year-old", "male"), so a missing field drops its clause without leaving
dangling words behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from lesionaug.dataset.labels import ATTRIBUTES, DIAGNOSES, Labels, diagnosis_code
from lesionaug.errors import ConfigError, UsageError

DEFAULT_TEMPLATE = "a dermoscopic image of {diagnosis} {attributes} {site}"
GENERIC_PROMPT = "a dermoscopic image of a skin lesion"
FIELDS = ("diagnosis", "attributes", "site", "age", "sex")


MAX_TEMPLATE_CHARS = 4096  # a sentence; a longer template would be copied into every manifest line


def check_template(template: str) -> str:
    """Validate a prompt template: a sentence (at most ``MAX_TEMPLATE_CHARS``), only known fields,
    well-formed braces. Raises ``UsageError``: a template read from a file is checked by its reader."""
    if not isinstance(template, str):
        raise UsageError(f"--prompt-template must be text, got {type(template).__name__}",
                         fix="write one sentence with fields like {diagnosis} and {attributes}")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise UsageError(
            f"--prompt-template is {len(template):,} characters long, "
            f"over the {MAX_TEMPLATE_CHARS:,} a template may hold",
            fix="write one sentence with fields like {diagnosis} and {attributes}",
        )
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise UsageError(
            f"--prompt-template {template!r} is malformed ({exc})",
            fix="use fields like {diagnosis} and {attributes}, and double braces for literal ones",
        ) from None
    unknown = sorted({n for n in names if n not in FIELDS})
    if unknown:
        raise UsageError(
            f"--prompt-template has unknown field(s) {', '.join(unknown)}",
            fix=f"use only {', '.join('{' + f + '}' for f in FIELDS)}",
        )
    return template


def join_words(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def clauses(labels: Labels) -> dict[str, str]:
    """Each template field rendered as a whole clause, or '' when the label is missing."""
    diagnosis = labels.diagnosis_name
    attrs = [ATTRIBUTES.get(a, a.replace("_", " ")) for a in labels.attributes]
    return {
        "diagnosis": diagnosis if diagnosis else "a skin lesion",
        "attributes": f"with {join_words(attrs)}" if attrs else "",
        "site": f"on the {labels.site}" if labels.site else "",
        "age": f"in a {labels.age}-year-old" if labels.age is not None else "",
        "sex": f"{labels.sex} patient" if labels.sex else "",
    }


def build_prompt(labels: Labels | None, template: str = DEFAULT_TEMPLATE) -> str:
    """Render ``labels`` into ``template``; unlabelled samples get the generic prompt."""
    if labels is None or labels.is_empty:
        return GENERIC_PROMPT
    check_template(template)
    text = template.format(**clauses(labels))
    return _tidy(text)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    return text.strip(" ,;:")


# ---------------------------------------------------------------------------------------------
# Label sampling: which labels (hence which prompt and which shape model) a new pair gets.

LABEL_MODES = ("match", "balanced")


@dataclass(frozen=True)
class LabelSpec:
    """How new label sets are drawn: ``match`` the training split's joint distribution,
    ``balanced`` (uniform over diagnoses), or ``weights`` (explicit diagnosis weights).

    In the last two the attributes, site, age and sex come from a training label set of the drawn
    diagnosis, so they stay plausible for it.
    """

    mode: str = "match"
    weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in (*LABEL_MODES, "weights"):
            raise UsageError(f"unknown label mode {self.mode!r}", fix="use match, balanced or code=weight,...")
        if (self.mode == "weights") != bool(self.weights):
            raise UsageError("diagnosis weights go with label mode 'weights' and only with it")
        if any(w <= 0 or not math.isfinite(w) for _, w in self.weights):
            raise UsageError("diagnosis weights must be positive numbers")
        codes = [c for c, _ in self.weights]
        if len(set(codes)) != len(codes):
            raise UsageError(f"diagnosis weights name a code twice: {','.join(codes)}")

    def describe(self) -> str:
        if self.mode != "weights":
            return self.mode
        return ",".join(f"{code}={weight:.6g}" for code, weight in self.weights)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "weights": {code: weight for code, weight in self.weights}}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelSpec":
        return cls(mode=data["mode"], weights=tuple(sorted((data.get("weights") or {}).items())))


def parse_label_spec(text: str) -> LabelSpec:
    """``match``, ``balanced``, or diagnosis weights like ``mel=0.5,nv=0.3,bcc=0.2``."""
    key = text.strip().lower()
    if key in LABEL_MODES:
        return LabelSpec(mode=key)
    return LabelSpec(mode="weights", weights=parse_diagnosis_weights(text))


def parse_diagnosis_weights(text: str) -> tuple[tuple[str, float], ...]:
    """Parse ``code=weight,...`` into normalised ``(code, weight)`` pairs sorted by code.

    Codes may be written as any spelling ``labels.diagnosis_code`` knows (``melanoma`` = ``mel``).
    """
    pairs: dict[str, float] = {}
    unknown = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(
                f"malformed diagnosis weight {item!r} in {text!r}", fix="write code=weight, e.g. mel=0.5,nv=0.5"
            )
        try:
            weight = float(value)
        except ValueError:
            raise UsageError(f"weight {value.strip()!r} of {name.strip()!r} is not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise UsageError(f"weight of {name.strip()!r} must be a positive number, got {value.strip()}")
        code = diagnosis_code(name)
        if code is None:
            unknown.append(name.strip())
            continue
        if code in pairs:
            raise UsageError(f"diagnosis {code!r} is given twice in {text!r}")
        pairs[code] = weight
    if unknown:
        raise UsageError(
            f"unknown diagnosis code(s) {', '.join(unknown)}; known codes: {', '.join(DIAGNOSES)}"
        )
    if not pairs:
        raise UsageError(f"no diagnosis weights in {text!r}", fix="write code=weight, e.g. mel=0.5,nv=0.5")
    total = sum(pairs.values())
    return tuple(sorted((code, weight / total) for code, weight in pairs.items()))


@dataclass(frozen=True, eq=False)
class LabelSampler:
    """The training split's label sets, from which new label sets are drawn."""

    label_sets: tuple[Labels, ...]

    def __post_init__(self) -> None:
        if not self.label_sets:
            raise ConfigError("cannot sample labels: the training split is empty")
        by_diagnosis: dict[str, list[int]] = {}
        for i, labels in enumerate(self.label_sets):
            if labels.diagnosis:
                by_diagnosis.setdefault(labels.diagnosis, []).append(i)
        object.__setattr__(self, "_rows", {d: np.asarray(r) for d, r in sorted(by_diagnosis.items())})

    @property
    def diagnoses(self) -> tuple[str, ...]:
        return tuple(self._rows)

    def diagnosis_counts(self) -> dict[str, int]:
        return {d: int(r.size) for d, r in self._rows.items()}

    def check(self, spec: LabelSpec) -> LabelSpec:
        """Fail early, in one line, when ``spec`` asks for diagnoses the training split lacks."""
        if spec.mode == "match":
            return spec
        if not self._rows:
            raise ConfigError(
                f"the label mix {spec.describe()} needs diagnosis labels, but the training split has none",
                fix="use --label-mix match (generic prompts), or join a label table with --labels FILE",
            )
        missing = [code for code, _ in spec.weights if code not in self._rows]
        if missing:
            known = ", ".join(f"{d} ({n})" for d, n in self.diagnosis_counts().items())
            raise ConfigError(
                f"diagnosis {', '.join(missing)} not in the training split; known: {known}",
                fix="weight only diagnoses the model was trained on",
            )
        return spec

    def sample(self, spec: LabelSpec, rng: np.random.Generator) -> Labels:
        """One label set drawn according to ``spec`` (call ``check`` first)."""
        if spec.mode == "match":
            return self.label_sets[int(rng.integers(len(self.label_sets)))]
        if spec.mode == "balanced":
            diagnosis = self.diagnoses[int(rng.integers(len(self.diagnoses)))]
        else:
            codes = [code for code, _ in spec.weights]
            probs = np.array([weight for _, weight in spec.weights])
            diagnosis = codes[int(rng.choice(len(codes), p=probs / probs.sum()))]
        rows = self._rows[diagnosis]
        return self.label_sets[int(rows[rng.integers(rows.size)])]

    def digest(self) -> str:
        """sha256 of the label sets, in order: part of a plan's identity."""
        text = json.dumps([labels.to_dict() for labels in self.label_sets], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def fit_label_sampler(label_sets: Iterable[Labels | None]) -> LabelSampler:
    """A sampler over the training split's label sets (missing labels count as unlabelled)."""
    return LabelSampler(tuple(labels if labels is not None else Labels() for labels in label_sets))
