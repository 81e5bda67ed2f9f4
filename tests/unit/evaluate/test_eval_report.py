"""report.json: metrics plus provenance, read back with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pomona.errors import ConfigError
from pomona.evaluate.metrics import compute_metrics
from pomona.evaluate.report import REPORT_JSON, EvaluatedModel, EvaluationReport, read_report


def make_report(split: str = "test") -> EvaluationReport:
    y_true = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
    metrics = compute_metrics(y_true, probs, ["a", "b", "c"], k=2)
    return EvaluationReport(
        **metrics.model_dump(),
        model=EvaluatedModel(
            reference="pets@prod",
            directory="/models/pets/1",
            architecture="simple_cnn",
            weights_sha256="a" * 64,
        ),
        dataset="/data/pets",
        dataset_sha256="b" * 64,
        split=split,
    )


def test_round_trip_and_headline_metrics(tmp_path: Path) -> None:
    report = make_report("val")
    (tmp_path / REPORT_JSON).write_text(report.model_dump_json())
    loaded = read_report(tmp_path)
    assert loaded == report
    assert loaded.top1_error == pytest.approx(0.25)
    assert loaded.headline_metrics() == {
        "val_top1_error": pytest.approx(0.25),
        "val_top2_error": pytest.approx(0.0),
        "val_ece": report.ece,
    }


def test_missing_or_invalid_reports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds no report\.json; pass the --out directory"):
        read_report(tmp_path)
    (tmp_path / REPORT_JSON).write_text(
        make_report().model_dump_json().replace('"count":4', '"count":5')
    )
    with pytest.raises(ConfigError, match="invalid evaluation report"):
        read_report(tmp_path)
