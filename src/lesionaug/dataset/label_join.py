"""Joining label tables onto a layout's samples by image id, with conflicts refused.

The layout's own labels come first, then each ``--labels`` table in the order given. A field a
source leaves empty is filled by a later one; attributes are the union; ``extra`` keeps the first
value of each key. Two sources that both state a field must agree:

- diagnosis: equal, or one refines the other (``sk`` refines ``bkl``, ``nv`` refines ``benign``,
  ``ak`` refines ``akiec``; ``nv`` and ``nevus`` are one diagnosis; ``unk`` agrees with anything);
  the more specific one is kept, the first one when neither is;
- sex: equal; age: within 5 years (the archive gives 5-year bins);
- site: the same body region (``posterior torso`` and HAM's ``back`` agree; ``face`` and
  ``lower extremity`` do not); a site outside the known regions agrees with anything; the first is kept.

Anything else is a ``DatasetError`` (exit 3) naming the id, the field and both files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lesionaug.dataset.label_tables import LabelTable
from lesionaug.dataset.labels import Labels
from lesionaug.dataset.layouts.records import Candidate
from lesionaug.errors import DatasetError

AGE_TOLERANCE = 5

# Each diagnosis code and the broader codes it refines.
BROADER: dict[str, frozenset[str]] = {
    "mel": frozenset({"malignant"}),
    "bcc": frozenset({"malignant"}),
    "scc": frozenset({"akiec", "malignant"}),
    "ak": frozenset({"akiec", "benign", "malignant"}),  # indeterminate in the archive
    "akiec": frozenset({"benign", "malignant"}),
    "nv": frozenset({"nevus", "benign"}),
    "nevus": frozenset({"nv", "benign"}),
    "common_nevus": frozenset({"nv", "nevus", "benign"}),
    "atypical_nevus": frozenset({"nv", "nevus", "benign"}),
    "sk": frozenset({"bkl", "benign"}),
    "bkl": frozenset({"benign"}),
    "df": frozenset({"benign"}),
    "vasc": frozenset({"benign"}),
}

# Body regions of the site spellings of HAM10000 (localization), the archive's anatom_site_general
# and anatom_site_1 (normalised: lower case, '/' read as 'or').
SITE_REGIONS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("head or neck", "head and neck", "face", "scalp", "ear", "neck"), frozenset({"head"})),
    **dict.fromkeys(("upper extremity",), frozenset({"upper"})),
    **dict.fromkeys(("lower extremity",), frozenset({"lower"})),
    "hand": frozenset({"upper", "acral"}),
    "foot": frozenset({"lower", "acral"}),
    **dict.fromkeys(
        ("anterior torso", "posterior torso", "lateral torso", "torso", "trunk", "back", "chest", "abdomen"),
        frozenset({"trunk"}),
    ),
    **dict.fromkeys(("palms or soles", "acral"), frozenset({"acral"})),
    **dict.fromkeys(("oral or genital", "genital", "anogenital region"), frozenset({"genital"})),
}


def diagnoses_agree(a: str, b: str) -> bool:
    return a == b or "unk" in (a, b) or b in BROADER.get(a, ()) or a in BROADER.get(b, ())


def more_specific(first: str, second: str) -> str:
    """Of two agreeing diagnoses, the one that refines the other (``first`` when neither does)."""
    if first in BROADER.get(second, ()) and second not in BROADER.get(first, ()):
        return second
    if first == "unk":
        return second
    return first


def sites_agree(a: str, b: str) -> bool:
    ra, rb = SITE_REGIONS.get(a), SITE_REGIONS.get(b)
    return a == b or ra is None or rb is None or bool(ra & rb)


@dataclass
class _Joined:
    """Labels being joined, and which source set each field (for conflict messages)."""

    sample_id: str
    values: dict = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def add(self, labels: Labels, source: str) -> None:
        new = labels.to_dict()
        for key in ("diagnosis", "site", "age", "sex"):
            if key in new:
                self._field(key, new[key], source)
        if new.get("attributes"):
            self.values["attributes"] = sorted(set(self.values.get("attributes", ())) | set(new["attributes"]))
        if new.get("extra"):
            self.values["extra"] = {**new["extra"], **self.values.get("extra", {})}

    def _field(self, key: str, value, source: str) -> None:
        if key not in self.values:
            self.values[key], self.sources[key] = value, source
            return
        old = self.values[key]
        agree = {
            "diagnosis": lambda: diagnoses_agree(old, value),
            "site": lambda: sites_agree(old, value),
            "age": lambda: abs(int(old) - int(value)) <= AGE_TOLERANCE,
            "sex": lambda: old == value,
        }[key]()
        if not agree:
            raise DatasetError(
                f"conflicting {key} for {self.sample_id}: {old!r} in {self.sources[key]} but {value!r} in {source}",
                path=source,
                fix="correct one of the two files, or leave one of them out of --labels",
            )
        if key == "diagnosis" and more_specific(old, value) != old:
            self.values[key], self.sources[key] = value, source

    def labels(self) -> Labels:
        return Labels.from_dict(self.values)


def own_label_source(candidate: Candidate, fallback: str) -> str:
    """Where a layout's own labels of a sample came from: its label file(s), else ``fallback``."""
    rows = candidate.source.get("label_rows")
    if isinstance(rows, dict) and rows:
        return ", ".join(sorted(rows))
    return fallback


def join_label_tables(candidates: list[Candidate], tables: list[LabelTable], own_source: str) -> list[dict]:
    """Join ``tables`` onto ``candidates`` in place; returns each table's summary (rows, matched, unknown)."""
    matched = [0] * len(tables)
    for c in candidates:
        joined: _Joined | None = None
        for t, table in enumerate(tables):
            found = table.lookup(c.id)
            if found is None:
                continue
            matched[t] += 1
            if joined is None:
                joined = _Joined(c.id)
                joined.add(c.labels, own_label_source(c, own_source))
            joined.add(found, str(table.path))
            c.source.setdefault("label_tables", []).append(str(table.path))
        if joined is not None:
            c.labels = joined.labels()
    return [
        {
            "path": str(table.path),
            "format": table.format,
            "rows": table.n_rows,
            "matched": matched[t],
            "unknown_values": table.unknown_values,
        }
        for t, table in enumerate(tables)
    ]
