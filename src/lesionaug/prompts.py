"""Textual prompts: render a lesion's labels into the text the generator is conditioned on.

The template has the fields ``{diagnosis}``, ``{attributes}``, ``{site}``, ``{age}``, ``{sex}``.
Each field renders as a whole clause ("of melanoma", "with pigment network and streaks",
"on the back", "of a 45-year-old", "male"), so a missing field drops its clause without leaving
dangling words behind.
"""

from __future__ import annotations

import re
import string

from lesionaug.errors import ConfigError
from lesionaug.labels import ATTRIBUTES, Labels

DEFAULT_TEMPLATE = "a dermoscopic image of {diagnosis} {attributes} {site}"
GENERIC_PROMPT = "a dermoscopic image of a skin lesion"
FIELDS = ("diagnosis", "attributes", "site", "age", "sex")


def check_template(template: str) -> str:
    """Validate a prompt template: only known fields, well-formed braces."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(
            f"prompt template {template!r} is malformed ({exc})",
            fix="use fields like {diagnosis} and {attributes}, and double braces for literal ones",
        ) from None
    unknown = sorted({n for n in names if n not in FIELDS})
    if unknown:
        raise ConfigError(
            f"prompt template has unknown field(s) {', '.join(unknown)}",
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
