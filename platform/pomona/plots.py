"""Figures written as PNG files, and the training curves; shared by training and evaluation.

Figures are built as :class:`matplotlib.figure.Figure` objects on an explicit Agg canvas rather
than through ``pyplot``: nothing is registered in pyplot's global figure list (so nothing leaks
across many plots in one process) and no GUI backend is ever selected, even where a display
exists. Each figure is dropped once its PNG is written. Training draws its curves here without
importing :mod:`pomona.evaluate`; evaluation's plots build on :func:`new_figure` and
:func:`save_figure`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pomona.storage import atomic_write_bytes

_DPI = 110


def new_figure(width_in: float, height_in: float) -> Figure:
    """An empty figure of the given size in inches, on its own Agg canvas (not in pyplot)."""
    figure = Figure(figsize=(width_in, height_in), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG atomically (parent folders are created), clear it.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    figure.clear()
    atomic_write_bytes(path, buffer.getvalue())
    return path


def integer_ticks(axis: Axis) -> None:
    """Tick ``axis`` at whole numbers only (epochs, counts).

    ``min_n_ticks=1`` keeps this true for a single value too: matplotlib's default of 2 falls back
    to fractional ticks when the view (e.g. 0.95 to 1.05 around one epoch) holds one integer.
    """
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


_CURVE_KEYS = ("epoch", "train_loss", "train_error", "val_loss", "val_error")


def plot_curves(rows: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Draw training curves: train vs. validation error (top) and loss (bottom) by epoch.

    Args:
        rows: one mapping per epoch with keys ``epoch``, ``train_loss``, ``train_error``,
            ``val_loss`` and ``val_error`` (extra keys are ignored).
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.

    Raises:
        ValueError: ``rows`` is empty or a row lacks one of the keys.
    """
    if not rows:
        raise ValueError("plot_curves needs at least one epoch row")
    for index, row in enumerate(rows):
        missing = [key for key in _CURVE_KEYS if key not in row]
        if missing:
            raise ValueError(f"row {index} lacks {missing}; each row needs {list(_CURVE_KEYS)}")
    epochs = [row["epoch"] for row in rows]
    figure = new_figure(7, 6.5)
    error_axes, loss_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.1})
    for axes, metric in ((error_axes, "error"), (loss_axes, "loss")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row[f"{split}_{metric}"] for row in rows]
            axes.plot(epochs, values, style, markersize=3, label=f"{split} {metric}")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    error_axes.set_ylim(bottom=0)
    error_axes.set_title("Training curves")
    loss_axes.set_xlabel("epoch")
    integer_ticks(loss_axes.xaxis)  # shared with error_axes
    return save_figure(figure, path)
