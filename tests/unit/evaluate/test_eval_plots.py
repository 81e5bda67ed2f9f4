"""Evaluation plots write readable PNGs and leave no figure behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.plots import assert_png

from pomona.evaluate.metrics import compute_metrics
from pomona.evaluate.plots import plot_confusion, plot_per_class, plot_reliability


def predictions(c: int, n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, 0.5), size=n)
    return rng.integers(0, c, size=n), probs


@pytest.mark.parametrize("num_classes", [3, 50])
def test_evaluation_plots(tmp_path: Path, num_classes: int) -> None:
    y_true, probs = predictions(num_classes)
    # Long names and names with markup must not break the layout or the renderer.
    classes = [f"c{i}$\\frac{{$_with_a_rather_long_folder_name" for i in range(num_classes)]
    metrics = compute_metrics(y_true, probs, classes)

    for normalize in (False, True):
        out = plot_confusion(metrics, tmp_path / f"confusion_{normalize}.png", normalize=normalize)
        assert_png(out, min_side=400 if num_classes > 10 else 200)
    assert_png(plot_per_class(metrics, tmp_path / "nested" / "per_class.png"))
    assert_png(plot_reliability(y_true, probs, tmp_path / "reliability.png"))
    assert not list(tmp_path.rglob("*.tmp"))
