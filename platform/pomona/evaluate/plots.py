"""Evaluation plots (confusion matrix, per-class scores, reliability), written as PNG files.

Built on :mod:`pomona.plots`, so no figure is registered with pyplot and none outlives its PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pomona.evaluate.metrics import EvaluationMetrics, calibration_bins
from pomona.plots import integer_ticks, new_figure, save_figure

# Beyond this many classes, per-cell numbers in the confusion matrix overlap and become noise.
_ANNOTATE_MAX_CLASSES = 20
_LABEL_MAX_CHARS = 24


def _label(name: str) -> str:
    """A class name fit for a tick label: shortened, and ``$`` escaped so that a folder name
    is never parsed as mathtext (which can fail to render)."""
    short = name if len(name) <= _LABEL_MAX_CHARS else name[: _LABEL_MAX_CHARS - 1] + "…"
    return short.replace("$", r"\$")


def _tick_fontsize(n: int) -> float:
    return float(np.clip(14 - n / 5, 6, 10))


def plot_confusion(metrics: EvaluationMetrics, path: str | Path, normalize: bool) -> Path:
    """Draw the confusion matrix as a heat map (rows: true class, columns: predicted).

    Args:
        metrics: evaluation result.
        path: PNG file to write (parent folders are created).
        normalize: show each row as fractions of that class's samples instead of counts.

    Returns:
        ``path``.
    """
    counts = np.asarray(metrics.confusion_matrix, dtype=np.float64)
    n = metrics.num_classes
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        values = counts
    side = float(np.clip(2.5 + 0.28 * n, 5, 16))
    figure = new_figure(side + 1.2, side)
    axes = figure.add_subplot()
    image = axes.imshow(
        values, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest"
    )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    labels = [_label(c) for c in metrics.classes]
    fontsize = _tick_fontsize(n)
    axes.set_xticks(range(n), labels, rotation=90, fontsize=fontsize)
    axes.set_yticks(range(n), labels, fontsize=fontsize)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    kind = "row-normalised" if normalize else "counts"
    axes.set_title(f"Confusion matrix ({kind}), top-1 error {metrics.top1_error:.2%}")
    if n <= _ANNOTATE_MAX_CLASSES:
        threshold = values.max() / 2 if values.max() > 0 else 1
        for (row, col), value in np.ndenumerate(values):
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > threshold else "black"
            axes.text(col, row, text, ha="center", va="center", color=color, fontsize=fontsize - 1)
    return save_figure(figure, path)


def plot_per_class(metrics: EvaluationMetrics, path: str | Path) -> Path:
    """Draw precision, recall and F1 of every class as grouped horizontal bars.

    Horizontal bars keep class names readable (no rotated labels) with up to ~50 classes.

    Args:
        metrics: evaluation result.
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.
    """
    n = metrics.num_classes
    figure = new_figure(8, float(np.clip(1.5 + 0.32 * n, 3.5, 20)))
    axes = figure.add_subplot()
    rows = np.arange(n)
    height = 0.27
    for offset, (key, color) in enumerate(
        (("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1", "#55a868"))
    ):
        values = [getattr(metrics.per_class[c], key) for c in metrics.classes]
        axes.barh(rows + (offset - 1) * height, values, height=height, label=key, color=color)
    labels = [f"{_label(c)} (n={metrics.per_class[c].support})" for c in metrics.classes]
    axes.set_yticks(rows, labels, fontsize=_tick_fontsize(n))
    axes.set_ylim(n - 0.5, -0.5)  # first class on top; no margin, which grows with n rows
    axes.set_xlim(0, 1)
    axes.set_xlabel("score")
    axes.grid(axis="x", alpha=0.3)
    # Inside the axes the legend would cover a bar wherever it went: it sits in one row above
    # them, in room the title's pad leaves (in points, so the same for any number of classes).
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1), ncol=3, fontsize=8, frameon=False)
    macro = metrics.macro_avg
    axes.set_title(
        f"Per-class scores (macro P {macro.precision:.2f} / R {macro.recall:.2f} / "
        f"F1 {macro.f1:.2f})",
        pad=22,
    )
    return save_figure(figure, path)


def plot_reliability(y_true: np.ndarray, probs: np.ndarray, path: str | Path) -> Path:
    """Draw a reliability diagram: accuracy against top-1 confidence per bin, with the diagonal.

    The lower panel shows how many samples fall in each confidence bin, since a large gap in a
    nearly empty bin matters little.

    Args:
        y_true: true class indices, shape (N,).
        probs: predicted probabilities, shape (N, C).
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.
    """
    bins = calibration_bins(y_true, probs)
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = bins.edges[1] - bins.edges[0]
    filled = bins.count > 0

    figure = new_figure(6, 7)
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08}
    )
    top.bar(
        centres[filled],
        bins.accuracy[filled],
        width=width,
        edgecolor="black",
        color="#4c72b0",
        label="accuracy",
    )
    top.bar(
        centres[filled],
        bins.confidence[filled] - bins.accuracy[filled],
        bottom=bins.accuracy[filled],
        width=width,
        edgecolor="#c44e52",
        color="#c44e52",
        alpha=0.3,
        hatch="//",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability diagram (ECE {bins.ece:.3f}, {len(bins.edges) - 1} bins)")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, bins.count, width=width, edgecolor="black", color="gray")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("samples")
    integer_ticks(bottom.yaxis)
    return save_figure(figure, path)


def plot_metric_by_epoch(
    curves: Mapping[str, Sequence[float]], metric: str, path: str | Path
) -> Path:
    """Draw one line per run (e.g. per sweep trial): ``metric`` against epoch.

    Args:
        curves: run label -> the metric at epochs 1, 2, ...; empty curves are skipped.
        metric: the metric's name, for the axis label.
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.
    """
    figure = new_figure(7, 4.5)
    axes = figure.add_subplot()
    for label, values in curves.items():
        if values:
            axes.plot(range(1, len(values) + 1), values, "-o", markersize=3, label=_label(label))
    integer_ticks(axes.xaxis)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    if any(curves.values()):
        axes.legend(fontsize=7, ncol=2)
    axes.set_title(f"{metric} by epoch")
    return save_figure(figure, path)


def plot_metric_against(
    points: Sequence[tuple[bool | int | float | str, float]],
    setting: str,
    metric: str,
    path: str | Path,
    *,
    log_x: bool = False,
    categories: Sequence[bool | int | float | str] = (),
) -> Path:
    """Scatter a metric against one setting's values: numbers on a linear or log axis, anything
    else, or any setting given ``categories``, as evenly spaced categories.

    Args:
        points: (setting value, metric) pairs, one per run.
        setting: the setting's name, for the axis label.
        metric: the metric's name, for the axis label.
        path: PNG file to write (parent folders are created).
        log_x: a logarithmic x axis (for settings sampled log-uniformly).
        categories: the values the setting can take (a choice or grid), ticked in this order
            even where no run got one, so that ``choice(16, 32)`` shows 16 and 32 and nothing
            between; values not among them follow in order of first appearance.

    Returns:
        ``path``.
    """
    figure = new_figure(5, 3.8)
    axes = figure.add_subplot()
    values = [value for value, _ in points]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and not categories:
        xs = [float(v) for v in values]
        if log_x:
            axes.set_xscale("log")
        elif all(isinstance(v, int) for v in values):
            integer_ticks(axes.xaxis)  # a randint setting
    else:
        order = list(dict.fromkeys(str(v) for v in [*categories, *values]))
        xs = [float(order.index(str(v))) for v in values]
        axes.set_xticks(range(len(order)), [_label(c) for c in order])
        axes.set_xlim(-0.5, len(order) - 0.5)
    axes.scatter(xs, [metric_value for _, metric_value in points], color="#4c72b0")
    axes.set_xlabel(_label(setting))
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.set_title(f"{metric} against {_label(setting)}")
    return save_figure(figure, path)
