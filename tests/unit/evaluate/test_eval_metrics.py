"""Metrics are checked number by number against scikit-learn on random predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from pomona.evaluate.metrics import (
    EvaluationMetrics,
    calibration_bins,
    compute_metrics,
    expected_calibration_error,
    misclassified,
)


def random_predictions(
    seed: int, n: int, c: int, skip_class: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, 0.3), size=n)
    y_true = rng.integers(0, c, size=n)
    # Nudge probability towards the truth so precision/recall are not all near chance.
    hits = rng.random(n) < 0.5
    probs[hits, y_true[hits]] += 1.0
    if skip_class:
        # The last class is never true and never predicted: sklearn's zero_division=0 case.
        y_true[y_true == c - 1] = 0
        probs[:, c - 1] = 0.0
    probs /= probs.sum(axis=1, keepdims=True)
    return y_true, probs


@pytest.mark.parametrize(
    ("seed", "n", "c", "skip_class"),
    [(0, 300, 3, False), (1, 500, 10, False), (2, 400, 25, True), (3, 60, 12, True)],
)
def test_matches_sklearn(seed: int, n: int, c: int, skip_class: bool) -> None:
    y_true, probs = random_predictions(seed, n, c, skip_class)
    classes = [f"class_{i}" for i in range(c)]
    labels = list(range(c))
    predicted = probs.argmax(axis=1)

    metrics = compute_metrics(y_true, probs, classes, k=5)

    k = min(5, c - 1)
    assert metrics.count == n
    assert metrics.k == k
    assert metrics.correct == int((predicted == y_true).sum())
    assert metrics.top1_error == pytest.approx(1 - accuracy_score(y_true, predicted))
    expected_topk = top_k_accuracy_score(y_true, probs, k=k, labels=labels)
    assert metrics.topk_error == pytest.approx(1 - expected_topk)
    assert metrics.confusion_matrix == confusion_matrix(y_true, predicted, labels=labels).tolist()

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    for i, name in enumerate(classes):
        got = metrics.per_class[name]
        assert got.precision == pytest.approx(precision[i])
        assert got.recall == pytest.approx(recall[i])
        assert got.f1 == pytest.approx(f1[i])
        assert got.support == support[i]

    report = classification_report(
        y_true,
        predicted,
        labels=labels,
        target_names=classes,
        output_dict=True,
        zero_division=0,
    )
    for ours, theirs in ((metrics.macro_avg, "macro avg"), (metrics.weighted_avg, "weighted avg")):
        assert ours.precision == pytest.approx(report[theirs]["precision"])
        assert ours.recall == pytest.approx(report[theirs]["recall"])
        assert ours.f1 == pytest.approx(report[theirs]["f1-score"])


def test_k_is_capped_one_below_the_number_of_classes() -> None:
    """A top-3 error over 3 classes is always 0: it would measure nothing."""
    y_true, probs = random_predictions(4, 50, 3)
    metrics = compute_metrics(y_true, probs, ["a", "b", "c"], k=5)
    assert metrics.k == 2
    expected = top_k_accuracy_score(y_true, probs, k=2, labels=[0, 1, 2])
    assert metrics.topk_error == pytest.approx(1 - expected)
    two = compute_metrics(y_true % 2, probs[:, :2] / probs[:, :2].sum(1, keepdims=True), ["a", "b"])
    assert two.k == 1 and two.topk_error == two.top1_error


def test_top1_and_top_k_agree_on_ties() -> None:
    probs = np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    metrics = compute_metrics(np.array([1, 0]), probs, ["a", "b", "c"], k=1)
    # argmax picks the first of tied classes, so sample 0 is wrong for both measures.
    assert metrics.correct == 0
    assert metrics.top1_error == metrics.topk_error == 1.0


def test_ece_by_hand() -> None:
    y_true = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
    # Bins of width 1/15: 0.9 and 0.9 share (13/15, 14/15] with accuracy 1/2 (gap 0.4);
    # 0.7 sits alone in (10/15, 11/15], right (gap 0.3); 0.55 in (8/15, 9/15], wrong (gap 0.55).
    expected = (2 * 0.4 + 0.3 + 0.55) / 4
    assert expected_calibration_error(y_true, probs) == pytest.approx(expected)
    assert compute_metrics(y_true, probs, ["a", "b"]).ece == pytest.approx(expected)

    bins = calibration_bins(y_true, probs)
    assert bins.count.tolist() == [0] * 8 + [1, 0, 1, 0, 0, 2, 0]
    assert bins.accuracy[13] == 0.5
    assert bins.confidence[13] == pytest.approx(0.9)
    assert np.isnan(bins.accuracy[0])


def test_ece_is_zero_when_perfectly_confident_and_right() -> None:
    probs = np.eye(3)[[0, 1, 2, 2]]
    assert expected_calibration_error(np.array([0, 1, 2, 2]), probs) == 0.0


def test_misclassified_most_confident_first() -> None:
    y_true = np.array([0, 1, 0, 1, 0])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.7, 0.3]])
    assert misclassified(y_true, probs) == [3, 2, 1]
    assert misclassified(y_true, probs, limit=2) == [3, 2]
    assert misclassified(y_true, probs, limit=0) == []


def test_metrics_round_trip_through_json() -> None:
    y_true, probs = random_predictions(5, 40, 4)
    metrics = compute_metrics(y_true, probs, ["w", "x", "y", "z"])
    assert EvaluationMetrics.model_validate_json(metrics.model_dump_json()) == metrics


def test_inconsistent_metrics_are_rejected() -> None:
    y_true, probs = random_predictions(6, 20, 3)
    data = compute_metrics(y_true, probs, ["a", "b", "c"]).model_dump()
    data["count"] += 1
    with pytest.raises(ValueError, match="count"):
        EvaluationMetrics.model_validate(data)


@pytest.mark.parametrize(
    ("y_true", "probs", "match"),
    [
        (np.array([0, 1]), np.array([[2.0, -1.0], [0.0, 1.0]]), "probabilities"),
        (np.array([0, 1]), np.array([[0.3, 0.3], [0.5, 0.5]]), "softmax"),
        (np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]), r"\[0, 1\]"),
        (np.array([0]), np.array([[0.5, 0.5], [0.5, 0.5]]), "shape"),
        (np.array([0.0, 1.0]), np.array([[0.5, 0.5], [0.5, 0.5]]), "integer"),
        (np.array([], dtype=int), np.zeros((0, 2)), "non-empty"),
    ],
)
def test_bad_inputs_are_rejected(y_true: np.ndarray, probs: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(y_true, probs, ["a", "b"])


def test_class_count_must_match() -> None:
    with pytest.raises(ValueError, match="3 classes"):
        compute_metrics(np.array([0]), np.array([[0.5, 0.5]]), ["a", "b", "c"])
