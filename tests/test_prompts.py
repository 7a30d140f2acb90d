"""Prompt rendering and label sampling."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesionaug.dataset.labels import ATTRIBUTES, DIAGNOSES, Labels
from lesionaug.errors import ConfigError, UsageError
from lesionaug.plan.prompts import (
    DEFAULT_TEMPLATE,
    GENERIC_PROMPT,
    LabelSpec,
    build_prompt,
    check_template,
    fit_label_sampler,
    parse_diagnosis_weights,
    parse_label_spec,
)

TEMPLATES = (
    DEFAULT_TEMPLATE,
    "{diagnosis} {attributes} {site} {age} {sex}",
    "a dermoscopic image of {diagnosis} {attributes}, {site}, {age} {sex}",
    "{sex} {age}: {diagnosis} {site} {attributes}",
)
DANGLING = re.compile(r"\b(with|of|and|on the|on|in a)\s*[,.;:]?$")

labels_strategy = st.builds(
    Labels,
    diagnosis=st.sampled_from([None, *DIAGNOSES]),
    attributes=st.lists(st.sampled_from(list(ATTRIBUTES)), max_size=len(ATTRIBUTES), unique=True).map(tuple),
    site=st.sampled_from([None, "back", "lower extremity", "head or neck"]),
    age=st.sampled_from([None, 5, 45, 85]),
    sex=st.sampled_from([None, "male", "female"]),
)


@settings(max_examples=300, deadline=None)
@given(labels=labels_strategy, template=st.sampled_from(TEMPLATES))
def test_every_label_combination_renders_without_dangling_words(labels, template):
    text = build_prompt(labels, template)
    assert text and text == text.strip()
    assert "  " not in text and " ," not in text and ",," not in text
    assert not DANGLING.search(text), text
    assert not re.match(r"^(with|and|of|on)\b", text), text
    assert "{" not in text and "}" not in text
    if labels.is_empty:
        assert text == GENERIC_PROMPT


def test_default_prompt_reads_like_the_paper():
    labels = Labels(diagnosis="mel", attributes=("streaks", "pigment_network"), site="back")
    assert build_prompt(labels) == "a dermoscopic image of melanoma with pigment network and streaks on the back"
    assert build_prompt(Labels(diagnosis="nv")) == "a dermoscopic image of melanocytic nevus"
    assert build_prompt(Labels(attributes=("globules",))) == "a dermoscopic image of a skin lesion with globules"
    assert build_prompt(None) == GENERIC_PROMPT


def test_check_template():
    assert check_template("{diagnosis} {sex}") == "{diagnosis} {sex}"
    with pytest.raises(UsageError, match="unknown field"):
        check_template("{diagnosis} {colour}")
    with pytest.raises(UsageError, match="malformed"):
        check_template("{diagnosis")
    with pytest.raises(UsageError, match="4,097 characters long, over the 4,096"):
        check_template("{diagnosis}" + "x" * 4086)
    assert check_template("{diagnosis}" + "x" * 4085)


# --- label specs ----------------------------------------------------------------------------


def test_parse_label_spec_modes_and_weights():
    assert parse_label_spec("match") == LabelSpec()
    assert parse_label_spec(" Balanced ") == LabelSpec(mode="balanced")
    spec = parse_label_spec("mel=0.5, nv=0.3,bcc=0.2")
    assert spec.mode == "weights"
    assert dict(spec.weights) == pytest.approx({"bcc": 0.2, "mel": 0.5, "nv": 0.3})
    assert dict(parse_diagnosis_weights("mel=2,nv=2")) == {"mel": 0.5, "nv": 0.5}  # normalised
    assert dict(parse_diagnosis_weights("melanoma=1")) == {"mel": 1.0}  # readable names are codes too
    assert LabelSpec.from_dict(spec.to_dict()) == spec
    assert parse_label_spec(spec.describe()) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("mel=0.5,foo=0.5", "unknown diagnosis code"),
        ("mel=0", "positive"),
        ("mel=-1", "positive"),
        ("mel=nan", "positive"),
        ("mel=abc", "not a number"),
        ("mel", "malformed"),
        ("=0.5", "malformed"),
        ("mel=1,melanoma=1", "twice"),
        (",", "no diagnosis weights"),
    ],
)
def test_bad_weights_are_one_line_usage_errors(text, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_label_spec(text)
    assert "\n" not in info.value.one_line()


def test_unknown_code_error_lists_the_known_ones():
    with pytest.raises(UsageError) as info:
        parse_diagnosis_weights("xyz=1")
    assert "mel" in info.value.message and "akiec" in info.value.message


def test_label_spec_validation():
    with pytest.raises(UsageError):
        LabelSpec(mode="weights")
    with pytest.raises(UsageError):
        LabelSpec(mode="match", weights=(("mel", 1.0),))
    with pytest.raises(UsageError):
        LabelSpec(mode="sometimes")


# --- label sampler --------------------------------------------------------------------------

TRAINING = (
    [Labels(diagnosis="nv", attributes=("pigment_network",), site="back", age=30, sex="female")] * 6
    + [Labels(diagnosis="nv", site="face")] * 2
    + [Labels(diagnosis="mel", attributes=("streaks",), age=60, sex="male")] * 2
    + [Labels()] * 2
)


def _draw(spec: LabelSpec, n: int = 4000, seed: int = 0) -> list[Labels]:
    sampler = fit_label_sampler(TRAINING)
    sampler.check(spec)
    rng = np.random.default_rng(seed)
    return [sampler.sample(spec, rng) for _ in range(n)]


def test_match_reproduces_the_training_joint():
    draws = Counter(_draw(LabelSpec()))
    training = Counter(TRAINING)
    assert set(draws) == set(training)  # only real label sets, never mixed-up ones
    for labels, count in training.items():
        assert draws[labels] / 4000 == pytest.approx(count / len(TRAINING), abs=0.03)


def test_balanced_is_uniform_over_diagnoses_with_attributes_from_the_diagnosis():
    draws = _draw(LabelSpec(mode="balanced"))
    counts = Counter(d.diagnosis for d in draws)
    assert set(counts) == {"nv", "mel"}
    assert counts["mel"] / len(draws) == pytest.approx(0.5, abs=0.03)
    mel_sets = {d for d in draws if d.diagnosis == "mel"}
    assert mel_sets == {TRAINING[8]}  # a melanoma always gets a melanoma's attributes
    nv = [d for d in draws if d.diagnosis == "nv"]
    assert sum(d.site == "face" for d in nv) / len(nv) == pytest.approx(2 / 8, abs=0.04)


def test_weights_follow_the_given_proportions():
    draws = _draw(parse_label_spec("mel=0.8,nv=0.2"))
    counts = Counter(d.diagnosis for d in draws)
    assert counts["mel"] / len(draws) == pytest.approx(0.8, abs=0.03)


def test_same_rng_state_same_labels():
    assert _draw(LabelSpec(mode="balanced"), 50, seed=3) == _draw(LabelSpec(mode="balanced"), 50, seed=3)


def test_sampler_refuses_what_training_lacks():
    sampler = fit_label_sampler(TRAINING)
    assert sampler.diagnosis_counts() == {"mel": 2, "nv": 8}
    with pytest.raises(ConfigError, match=r"vasc not in the training split; known: mel \(2\), nv \(8\)"):
        sampler.check(parse_label_spec("vasc=1,mel=1"))
    unlabelled = fit_label_sampler([Labels(), None])
    with pytest.raises(ConfigError, match="needs diagnosis labels"):
        unlabelled.check(LabelSpec(mode="balanced"))
    assert unlabelled.check(LabelSpec()) == LabelSpec()
    with pytest.raises(ConfigError, match="empty"):
        fit_label_sampler([])


def test_digest_changes_with_the_labels():
    a = fit_label_sampler(TRAINING).digest()
    assert a == fit_label_sampler(list(TRAINING)).digest()
    assert a != fit_label_sampler(TRAINING[:-1]).digest()
