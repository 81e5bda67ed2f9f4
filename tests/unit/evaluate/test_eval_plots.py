"""Evaluation plots write readable PNGs, leave no figure behind, tick counts and epochs at whole
numbers, keep the per-class legend off the bars and tick a choice at its values alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from support.plots import assert_png, visible_ticks

from pomona.evaluate import plots
from pomona.evaluate.metrics import compute_metrics
from pomona.evaluate.plots import (
    plot_confusion,
    plot_metric_against,
    plot_metric_by_epoch,
    plot_per_class,
    plot_reliability,
)


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


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the plots build, kept instead of written (writing clears them)."""
    figures: list[Figure] = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure) or path)
    return figures


@pytest.mark.parametrize("samples", [3, 10, 1000])
def test_reliability_counts_are_whole_numbers(
    tmp_path: Path, drawn: list[Figure], samples: int
) -> None:
    plot_reliability(*predictions(4, n=samples), tmp_path / "reliability.png")
    ticks = visible_ticks(drawn[0].axes[1].yaxis)
    assert len(ticks) >= 2 and all(t.is_integer() for t in ticks)


@pytest.mark.parametrize("num_classes", [2, 50])
def test_per_class_legend_sits_between_the_bars_and_the_title(
    tmp_path: Path, drawn: list[Figure], num_classes: int
) -> None:
    metrics = compute_metrics(*predictions(num_classes), [f"c{i}" for i in range(num_classes)])
    plot_per_class(metrics, tmp_path / "per_class.png")
    drawn[0].draw_without_rendering()  # lays out the title and legend
    axes = drawn[0].axes[0]
    legend = axes.get_legend().get_window_extent()
    assert legend.y0 >= axes.get_window_extent().y1
    assert axes.title.get_window_extent().y0 >= legend.y1
    assert len({text.get_position()[1] for text in axes.get_legend().get_texts()}) == 1  # one row


def test_metric_by_epoch_ticks_one_epoch_once(tmp_path: Path, drawn: list[Figure]) -> None:
    plot_metric_by_epoch({"t1": [0.4], "t2": [0.5]}, "val_error", tmp_path / "curves.png")
    assert visible_ticks(drawn[0].axes[0].xaxis) == [1.0]


def test_metric_against_ticks_a_choice_at_its_values(tmp_path: Path, drawn: list[Figure]) -> None:
    points = [(16, 0.3), (32, 0.2), (16, 0.25)]
    plot_metric_against(points, "batch_size", "error", tmp_path / "a.png", categories=[16, 32, 64])
    plot_metric_against([(1, 0.3), (2, 0.2)], "depth", "error", tmp_path / "b.png")
    chosen, ranged = (figure.axes[0] for figure in drawn)
    assert [t.get_text() for t in chosen.get_xticklabels()] == ["16", "32", "64"]
    assert [x for x, _ in chosen.collections[0].get_offsets()] == [0, 1, 0]
    # Integers without categories (randint) sit on a number line ticked at whole numbers.
    assert visible_ticks(ranged.xaxis) == [1.0, 2.0]
