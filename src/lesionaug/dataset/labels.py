"""One label vocabulary for every dataset: diagnosis codes, dermoscopic attributes, site, age, sex.

Dataset readers normalise whatever their CSVs say into ``Labels``; prompts render ``Labels`` into
text. Codes are lower-case ASCII; readable names follow DATASETS.md section 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Diagnosis code -> readable name used in prompts.
DIAGNOSES: dict[str, str] = {
    # HAM10000 / ISIC 2018 Task 3 (and 2019's additions)
    "mel": "melanoma",
    "nv": "melanocytic nevus",
    "bcc": "basal cell carcinoma",
    "akiec": "actinic keratosis or intraepithelial carcinoma",
    "ak": "actinic keratosis",
    "scc": "squamous cell carcinoma",
    "bkl": "benign keratosis",
    "df": "dermatofibroma",
    "vasc": "vascular lesion",
    "unk": "unknown lesion",
    # ISIC 2017
    "sk": "seborrheic keratosis",
    "nevus": "nevus",
    # ISIC 2016
    "benign": "benign lesion",
    "malignant": "malignant lesion",
    # PH2
    "common_nevus": "common nevus",
    "atypical_nevus": "atypical nevus",
}

# Dermoscopic attribute code -> readable name.
ATTRIBUTES: dict[str, str] = {
    "pigment_network": "pigment network",
    "negative_network": "negative network",
    "streaks": "streaks",
    "milia_like_cyst": "milia-like cysts",
    "globules": "globules",
    # PH2 criteria
    "atypical_pigment_network": "atypical pigment network",
    "dots_globules": "dots and globules",
    "regression": "regression structures",
    "blue_whitish_veil": "blue-whitish veil",
}

# Canonical order of attributes in prompts (stable, so the same labels give the same text).
ATTRIBUTE_ORDER: tuple[str, ...] = tuple(ATTRIBUTES)

# Free-text diagnosis spellings seen in ISIC Archive metadata and CSVs -> code: the hierarchical
# ``diagnosis_1..5`` values (isic-metadata's DiagnosisEnum), the legacy flat ``diagnosis`` values and
# the readable names above. Keys are lower case with commas dropped and spaces collapsed (as
# ``label_read`` normalises a cell). docs/label-tables.md lists them; a test keeps the two equal.
DIAGNOSIS_ALIASES: dict[str, str] = {
    "melanoma": "mel",
    "melanoma invasive": "mel",
    "melanoma in situ": "mel",
    "melanoma nos": "mel",
    "melanoma metastasis": "mel",
    "malignant melanocytic proliferations (melanoma)": "mel",
    "nevus": "nv",
    "melanocytic nevus": "nv",
    "basal cell carcinoma": "bcc",
    "seborrheic keratosis": "sk",
    "pigmented benign keratosis": "bkl",
    "solar lentigo": "bkl",
    "lichen planus like keratosis": "bkl",
    "lichenoid keratosis": "bkl",
    "benign keratosis": "bkl",
    "actinic keratosis": "ak",
    "solar or actinic keratosis": "ak",
    "squamous cell carcinoma": "scc",
    "squamous cell carcinoma in situ": "scc",
    "squamous cell carcinoma invasive": "scc",
    "squamous cell carcinoma nos": "scc",
    "dermatofibroma": "df",
    "vascular lesion": "vasc",
    "hemangioma": "vasc",
    "angioma": "vasc",
    "angiokeratoma": "vasc",
    "pyogenic granuloma": "vasc",
    "benign soft tissue proliferations - vascular": "vasc",
    "benign": "benign",
    "malignant": "malignant",
    "common nevus": "common_nevus",
    "atypical nevus": "atypical_nevus",
}


def diagnosis_code(text: str | None) -> str | None:
    """Normalise a diagnosis code or free-text name to a code of ``DIAGNOSES``; None if unknown."""
    if text is None:
        return None
    key = str(text).strip().lower()
    if not key or key in {"unknown", "nan", "none", "na"}:
        return None
    if key in DIAGNOSES:
        return key
    return DIAGNOSIS_ALIASES.get(key)


def diagnosis_name(code: str | None) -> str | None:
    return DIAGNOSES.get(code) if code else None


@dataclass(frozen=True)
class Labels:
    """Normalised labels of one lesion. Every field may be missing."""

    diagnosis: str | None = None
    attributes: tuple[str, ...] = ()
    site: str | None = None
    age: int | None = None
    sex: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        order = {a: i for i, a in enumerate(ATTRIBUTE_ORDER)}
        attrs = tuple(sorted(set(self.attributes), key=lambda a: (order.get(a, len(order)), a)))
        object.__setattr__(self, "attributes", attrs)

    @property
    def diagnosis_name(self) -> str | None:
        return diagnosis_name(self.diagnosis)

    @property
    def is_empty(self) -> bool:
        return not (self.diagnosis or self.attributes or self.site or self.age is not None or self.sex)

    def to_dict(self) -> dict:
        out: dict = {}
        if self.diagnosis:
            out["diagnosis"] = self.diagnosis
        if self.attributes:
            out["attributes"] = list(self.attributes)
        if self.site:
            out["site"] = self.site
        if self.age is not None:
            out["age"] = self.age
        if self.sex:
            out["sex"] = self.sex
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Labels":
        return cls(
            diagnosis=data.get("diagnosis"),
            attributes=tuple(data.get("attributes", ())),
            site=data.get("site"),
            age=data.get("age"),
            sex=data.get("sex"),
            extra=tuple(sorted((data.get("extra") or {}).items())),
        )


# Extras that belong to one real lesion, patient or image file. A synthetic pair drawn from a real
# lesion's label set does not inherit them: grouping by lesion_id would put it in that lesion's group,
# and a confirmation or licence describes an image it is not.
LESION_IDENTITY_EXTRAS = frozenset(
    {"lesion_id", "patient_id", "diagnosis_confirm_type", "dx_type", "histology", "copyright_license", "attribution"}
)


def synthetic_labels(labels: Labels) -> Labels:
    """The labels a synthetic pair gets from a real label set: the same diagnosis, attributes, site,
    age and sex, none of ``LESION_IDENTITY_EXTRAS``, and ``source_lesion_id`` where the set had a lesion id."""
    extra = dict(labels.extra)
    kept = {k: v for k, v in extra.items() if k not in LESION_IDENTITY_EXTRAS and k != "source_lesion_id"}
    if extra.get("lesion_id"):
        kept["source_lesion_id"] = extra["lesion_id"]
    return replace(labels, extra=tuple(sorted(kept.items())))
