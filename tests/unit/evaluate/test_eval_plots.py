"""Plots write readable PNGs and leave no figure behind."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from pomona.evaluate.metrics import compute_metrics
from pomona.evaluate.plots import plot_confusion, plot_curves, plot_per_class, plot_reliability

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def predictions(c: int, n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, 0.5), size=n)
    return rng.integers(0, c, size=n), probs


def assert_png(path: Path, min_side: int = 200) -> None:
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(path) as image:
        assert min(image.size) >= min_side
    assert plt.get_fignums() == []


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


def test_plot_curves(tmp_path: Path) -> None:
    rows = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_error": 0.5 / e,
            "val_loss": 1.2 / e,
            "val_error": 0.6 / e,
            "lr": 0.1,
        }
        for e in range(1, 6)
    ]
    assert_png(plot_curves(rows, tmp_path / "curves.png"))


def test_plot_curves_rejects_incomplete_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="val_error"):
        plot_curves(
            [{"epoch": 1, "train_loss": 1, "train_error": 1, "val_loss": 1}], tmp_path / "x.png"
        )
    with pytest.raises(ValueError, match="at least one"):
        plot_curves([], tmp_path / "x.png")
