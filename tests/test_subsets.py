"""The one seeded choice of real training pairs shared by train, augment and evaluate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from lesionaug.dataset.subsets import RealSubset, choose_real_subset, real_subset_from_options
from lesionaug.errors import DatasetError, UsageError


@dataclass(frozen=True)
class Item:
    id: str


ITEMS = [Item(f"ISIC_{k:07d}") for k in range(20)]


def _by_hand(items, k, seed):
    """The k items with the smallest blake2b digest of 'real-subset:<seed>:<id>', in input order."""
    digest = {i.id: hashlib.blake2b(f"real-subset:{seed}:{i.id}".encode(), digest_size=16).digest() for i in items}
    smallest = set(sorted(digest, key=digest.get)[:k])
    return [i for i in items if i.id in smallest]


def test_count_and_fraction_choose_by_the_seeded_hash_of_the_id():
    assert choose_real_subset(ITEMS, RealSubset(count=5, seed=0)) == _by_hand(ITEMS, 5, 0)
    assert choose_real_subset(ITEMS, RealSubset(fraction=0.22, seed=3)) == _by_hand(ITEMS, 5, 3)  # ceil(4.4)
    assert choose_real_subset(ITEMS, RealSubset(fraction=0.01)) == _by_hand(ITEMS, 1, 0)  # at least one
    assert choose_real_subset(ITEMS, None) == ITEMS
    assert choose_real_subset(ITEMS, RealSubset(count=5, seed=0)) != choose_real_subset(ITEMS, RealSubset(count=5, seed=1))


def test_the_choice_ignores_listing_order_and_barely_moves_when_a_sample_is_added():
    subset = RealSubset(count=6, seed=2)
    chosen = {i.id for i in choose_real_subset(ITEMS, subset)}
    assert {i.id for i in choose_real_subset(list(reversed(ITEMS)), subset)} == chosen
    grown = {i.id for i in choose_real_subset([*ITEMS, Item("ISIC_9999999")], subset)}
    assert len(chosen - grown) <= 1


def test_bad_options_are_usage_errors_and_too_many_is_a_dataset_error():
    with pytest.raises(UsageError, match="both"):
        RealSubset(fraction=0.5, count=3)
    with pytest.raises(UsageError, match="--real-fraction"):
        RealSubset(fraction=1.5)
    with pytest.raises(UsageError, match="--real-count"):
        RealSubset(count=0)
    with pytest.raises(DatasetError, match="has 20") as error:
        choose_real_subset(ITEMS, RealSubset(count=21))
    assert "--real-count 20" in error.value.fix
    assert real_subset_from_options(None, None, 4) is None
    assert real_subset_from_options(None, 16, 4) == RealSubset(count=16, seed=4)
    assert RealSubset(count=16).option() == "--real-count 16" and RealSubset(fraction=0.22).option() == "--real-fraction 0.22"
