"""Training curves write a readable PNG, leave no figure behind, tick whole epochs and reject
incomplete rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from support.plots import assert_png, visible_ticks

from pomona import plots
from pomona.plots import plot_curves


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


@pytest.mark.parametrize("epochs", [1, 2, 5, 30])
def test_plot_curves_ticks_whole_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epochs: int
) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: drawn.append(figure) or path)
    rows = [
        {"epoch": e, "train_loss": 1 / e, "train_error": 0.5 / e, "val_loss": 1, "val_error": 0.5}
        for e in range(1, epochs + 1)
    ]
    plot_curves(rows, tmp_path / "curves.png")

    for axes in drawn[0].axes:  # error and loss share the x axis
        ticks = visible_ticks(axes.xaxis)
        assert ticks and all(t.is_integer() for t in ticks)
        if epochs == 1:
            assert ticks == [1.0]
