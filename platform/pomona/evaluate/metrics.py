"""Classification metrics from labels and predicted probabilities, in plain numpy.

:func:`compute_metrics` turns ``y_true`` (N,) and ``probs`` (N, C) into an
:class:`EvaluationMetrics` (top-1/top-k error, confusion matrix, per-class and averaged
precision/recall/F1, expected calibration error). The numbers match scikit-learn's
``accuracy_score``, ``top_k_accuracy_score``, ``confusion_matrix`` and
``precision_recall_fscore_support(zero_division=0)`` over all ``C`` labels, so a class that never
occurs still gets a row and counts in the macro average.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from pomona.config import StrictModel

ECE_BINS = 15
# Softmax outputs in float32 drift from 1 by ~1e-6 per row; anything further off is not a
# probability vector (most likely raw logits) and would make the calibration numbers meaningless.
_ROW_SUM_TOLERANCE = 1e-3


class ClassMetrics(StrictModel):
    """Precision, recall and F1 of one class, and how many samples truly belong to it."""

    precision: float = Field(ge=0, le=1)
    recall: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    support: NonNegativeInt


class AverageMetrics(StrictModel):
    """Precision, recall and F1 averaged over classes."""

    precision: float = Field(ge=0, le=1)
    recall: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)


class EvaluationMetrics(StrictModel):
    """Everything :func:`compute_metrics` measures on one split.

    Attributes:
        classes: class names; index i in ``confusion_matrix`` and the labels is ``classes[i]``.
        count: number of samples.
        correct: samples whose highest-probability class is the true class.
        top1_error: ``1 - correct / count``.
        k: the k of ``topk_error`` (capped one below the number of classes).
        topk_error: fraction of samples whose true class is not among the k most probable.
        confusion_matrix: ``[true][predicted]`` counts.
        per_class: metrics keyed by class name.
        macro_avg: unweighted mean over all classes, including classes without samples.
        weighted_avg: mean weighted by each class's support.
        ece: expected calibration error over 15 equal-width bins of the top-1 probability.
    """

    classes: list[str] = Field(min_length=2)
    count: PositiveInt
    correct: NonNegativeInt
    top1_error: float = Field(ge=0, le=1)
    k: PositiveInt
    topk_error: float = Field(ge=0, le=1)
    confusion_matrix: list[list[NonNegativeInt]]
    per_class: dict[str, ClassMetrics]
    macro_avg: AverageMetrics
    weighted_avg: AverageMetrics
    ece: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationMetrics:
        n = len(self.classes)
        if len(set(self.classes)) != n:
            raise ValueError(f"class names must be unique, got {self.classes}")
        if len(self.confusion_matrix) != n or any(len(row) != n for row in self.confusion_matrix):
            raise ValueError(f"confusion_matrix must be {n}x{n}, one row and column per class")
        if list(self.per_class) != self.classes:
            raise ValueError("per_class must have one entry per class, in class order")
        if sum(map(sum, self.confusion_matrix)) != self.count:
            raise ValueError(f"confusion_matrix does not add up to count ({self.count})")
        if sum(self.confusion_matrix[i][i] for i in range(n)) != self.correct:
            raise ValueError(
                f"confusion_matrix diagonal does not add up to correct ({self.correct})"
            )
        if self.k > n:
            raise ValueError(f"k ({self.k}) cannot exceed the number of classes ({n})")
        return self

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


class CalibrationBins(NamedTuple):
    """Top-1 confidence histogram: bin ``b`` covers ``(edges[b], edges[b + 1]]``.

    ``confidence`` and ``accuracy`` are per-bin means, NaN where ``count`` is 0.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Sum over bins of (share of samples) x |accuracy - mean confidence| (Guo et al., 2017)."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((self.count[filled] * gaps).sum() / self.count.sum())


def _check_inputs(
    y_true: np.ndarray, probs: np.ndarray, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty (N, C) array, got shape {probs.shape}")
    n, c = probs.shape
    if num_classes is not None and c != num_classes:
        raise ValueError(f"probs has {c} columns but there are {num_classes} classes")
    if y_true.shape != (n,) or not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(
            f"y_true must be an integer array of shape ({n},), got {y_true.dtype} {y_true.shape}"
        )
    if y_true.min() < 0 or y_true.max() >= c:
        raise ValueError(f"labels must lie in [0, {c - 1}], got [{y_true.min()}, {y_true.max()}]")
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError("probs must be finite probabilities in [0, 1]")
    worst = np.abs(probs.sum(axis=1) - 1).max()
    if worst > _ROW_SUM_TOLERANCE:
        raise ValueError(
            f"each row of probs must sum to 1 (off by up to {worst:.3g}); apply softmax to logits"
        )
    return y_true.astype(np.int64), probs


def calibration_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> CalibrationBins:
    """Bin samples by top-1 probability and measure accuracy and mean confidence per bin.

    Args:
        y_true: true class indices, shape (N,).
        probs: predicted probabilities, shape (N, C), rows summing to 1.
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        The bin edges, per-bin mean confidence and accuracy, and per-bin sample counts.
    """
    y_true, probs = _check_inputs(y_true, probs)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    confidence = probs.max(axis=1)
    hit = (probs.argmax(axis=1) == y_true).astype(np.float64)
    # side="left" puts a confidence equal to an edge into the bin it closes: (lo, hi].
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        mean_acc = np.bincount(which, weights=hit, minlength=n_bins) / count
    return CalibrationBins(edges=edges, confidence=mean_conf, accuracy=mean_acc, count=count)


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error of the top-1 probability over ``n_bins`` equal-width bins."""
    return calibration_bins(y_true, probs, n_bins).ece


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise division giving 0 where the denominator is 0 (sklearn's zero_division=0)."""
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def compute_metrics(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], k: int = 5
) -> EvaluationMetrics:
    """Measure predictions against the truth.

    Args:
        y_true: true class indices, shape (N,), N > 0.
        probs: predicted probabilities, shape (N, C) with ``C == len(classes)``.
        classes: class names, index i is ``classes[i]``.
        k: k of the top-k error, capped one below the number of classes (a top-k over every
            class is never wrong, so it would measure nothing).

    Returns:
        The metrics; precision, recall or F1 whose denominator is 0 are reported as 0.

    Raises:
        ValueError: shapes disagree, labels are out of range, or ``probs`` rows are not
            probability vectors.
    """
    classes = list(classes)
    y_true, probs = _check_inputs(y_true, probs, len(classes))
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n, c = probs.shape
    k = max(1, min(k, c - 1))

    predicted = probs.argmax(axis=1)
    confusion = np.bincount(y_true * c + predicted, minlength=c * c).reshape(c, c)
    # A stable sort of the negated scores breaks ties towards the lower index, as argmax does,
    # so top-k with k=1 always agrees with top-1.
    top_k = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    topk_hits = int((top_k == y_true[:, None]).any(axis=1).sum())

    true_positive = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = _safe_divide(true_positive, predicted_count)
    recall = _safe_divide(true_positive, support)
    # 2TP / (2TP + FP + FN) equals 2PR / (P + R) whenever the latter is defined, and is 0 (not
    # undefined) when a class has true positives nowhere; sklearn computes it the same way.
    f1 = _safe_divide(2 * true_positive, predicted_count + support)

    def average(weights: np.ndarray) -> AverageMetrics:
        total = weights.sum()
        share = weights / total if total else np.zeros_like(weights)
        return AverageMetrics(
            precision=float(precision @ share),
            recall=float(recall @ share),
            f1=float(f1 @ share),
        )

    correct = int(true_positive.sum())
    return EvaluationMetrics(
        classes=classes,
        count=n,
        correct=correct,
        top1_error=1.0 - correct / n,
        k=k,
        topk_error=1.0 - topk_hits / n,
        confusion_matrix=confusion.tolist(),
        per_class={
            name: ClassMetrics(
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
            )
            for i, name in enumerate(classes)
        },
        macro_avg=average(np.ones(c)),
        weighted_avg=average(support.astype(np.float64)),
        ece=expected_calibration_error(y_true, probs),
    )


def misclassified(y_true: np.ndarray, probs: np.ndarray, limit: int | None = None) -> list[int]:
    """Indices of wrongly predicted samples, most confident mistakes first.

    Args:
        y_true: true class indices, shape (N,).
        probs: predicted probabilities, shape (N, C).
        limit: return at most this many indices; None returns all mistakes.

    Returns:
        Sample indices ordered by the probability of the (wrong) predicted class, descending;
        ties keep sample order.
    """
    y_true, probs = _check_inputs(y_true, probs)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative or None, got {limit}")
    wrong = np.flatnonzero(probs.argmax(axis=1) != y_true)
    order = np.argsort(-probs[wrong].max(axis=1), kind="stable")
    return wrong[order][:limit].tolist()
