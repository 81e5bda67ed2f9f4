from __future__ import annotations

from collections import Counter

import pytest

from pomona.data.manifest import SplitFractions
from pomona.data.split import assign_splits
from pomona.errors import DatasetError

FRACTIONS = SplitFractions(train=0.6, val=0.2, test=0.2)


def items(per_class: dict[str, int]) -> tuple[list[str], list[str]]:
    labels = [c for c, n in per_class.items() for _ in range(n)]
    return labels, [f"h{i}" for i in range(len(labels))]


def test_stratified_counts_per_class() -> None:
    labels, hashes = items({"a": 50, "b": 20, "c": 10})
    splits = assign_splits(labels, hashes, FRACTIONS, seed=1)
    counts = Counter(zip(labels, splits, strict=True))
    assert (counts["a", "train"], counts["a", "val"], counts["a", "test"]) == (30, 10, 10)
    assert (counts["b", "train"], counts["b", "val"], counts["b", "test"]) == (12, 4, 4)
    assert (counts["c", "train"], counts["c", "val"], counts["c", "test"]) == (6, 2, 2)


def test_same_seed_same_split_other_seed_differs() -> None:
    labels, hashes = items({"a": 40, "b": 40})
    first = assign_splits(labels, hashes, FRACTIONS, seed=7)
    assert first == assign_splits(labels, hashes, FRACTIONS, seed=7)
    assert first != assign_splits(labels, hashes, FRACTIONS, seed=8)


def test_duplicates_share_a_split() -> None:
    labels, hashes = items({"a": 30, "b": 30})
    hashes[1] = hashes[0]
    hashes[2] = hashes[0]
    hashes[40] = hashes[35]
    for seed in range(20):
        splits = assign_splits(labels, hashes, FRACTIONS, seed=seed)
        assert splits[0] == splits[1] == splits[2]
        assert splits[35] == splits[40]


def test_every_split_gets_an_item_when_possible() -> None:
    labels, hashes = items({"a": 3, "b": 3})
    splits = assign_splits(labels, hashes, FRACTIONS, seed=0)
    assert Counter(zip(labels, splits, strict=True)) == {
        (c, s): 1 for c in "ab" for s in ("train", "val", "test")
    }


def test_too_small_class_names_class_and_count() -> None:
    labels, hashes = items({"big": 10, "tiny": 2})
    with pytest.raises(DatasetError, match=r"'tiny' has 2"):
        assign_splits(labels, hashes, FRACTIONS, seed=0)
    # Without a test split two images suffice.
    no_test = SplitFractions(train=0.8, val=0.2, test=0.0)
    splits = assign_splits(labels, hashes, no_test, seed=0)
    assert "test" not in splits


def test_fractions_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        SplitFractions(train=0.5, val=0.2, test=0.2)
