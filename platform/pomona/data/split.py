"""Seeded, stratified, disjoint train/val/test split.

Items are grouped by content hash first, so exact duplicate images always land in the same split;
the groups of each class are then shuffled with the seed and cut by the fractions.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from pomona.data.manifest import SPLITS, SplitFractions
from pomona.errors import DatasetError


def assign_splits(
    labels: Sequence[str], hashes: Sequence[str], fractions: SplitFractions, seed: int
) -> list[str]:
    """Return the split name of every item.

    Args:
        labels: class name of item i.
        hashes: content hash of item i; equal hashes share a split.
        fractions: train/val/test fractions.
        seed: same seed and inputs give the same assignment.

    Raises:
        DatasetError: a class has fewer distinct images than splits with a non-zero fraction.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for index, digest in enumerate(hashes):
        groups[digest].append(index)
    by_class: dict[str, list[str]] = defaultdict(list)
    for digest, members in groups.items():
        by_class[labels[members[0]]].append(digest)

    wanted = [(name, getattr(fractions, name)) for name in SPLITS]
    needed = sum(1 for _, fraction in wanted if fraction > 0)
    too_small = {c: len(d) for c, d in by_class.items() if len(d) < needed}
    if too_small:
        listed = ", ".join(f"{c!r} has {n}" for c, n in sorted(too_small.items()))
        raise DatasetError(
            f"too few distinct images to split {needed} ways: {listed}; add images, "
            "drop the class, or set a zero fraction with --split"
        )

    result = [""] * len(labels)
    for class_index, name in enumerate(sorted(by_class)):
        digests = sorted(by_class[name])
        rng = np.random.default_rng([seed, class_index])
        order = [digests[i] for i in rng.permutation(len(digests))]
        for split, chunk in zip(SPLITS, _cut(len(order), wanted), strict=True):
            for digest in order[chunk]:
                for member in groups[digest]:
                    result[member] = split
    return result


def _cut(n: int, wanted: Sequence[tuple[str, float]]) -> list[slice]:
    """Slices of ``range(n)`` per split: rounded sizes, each non-zero fraction gets at least 1."""
    sizes = [max(1, round(n * f)) if f > 0 else 0 for _, f in wanted[1:]]
    # train takes the remainder; trim val/test (largest first) if rounding left it empty.
    while n - sum(sizes) < 1:
        sizes[sizes.index(max(sizes))] -= 1
    sizes.insert(0, n - sum(sizes))
    bounds = np.cumsum([0, *sizes])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
