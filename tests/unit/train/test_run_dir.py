from __future__ import annotations

import math
from pathlib import Path

from pomona.train.run_dir import METRIC_COLUMNS, best_val_error, read_metrics, record_epoch


def row(epoch: int, val_error: float, attempt: int = 1) -> dict[str, float]:
    values = {k: 0.5 for k in METRIC_COLUMNS}
    return {**values, "epoch": epoch, "val_error": val_error, "attempt": attempt}


def test_record_epoch_orders_and_replaces_rows(tmp_path: Path) -> None:
    assert read_metrics(tmp_path) == []
    record_epoch(tmp_path, row(2, 0.3))
    record_epoch(tmp_path, row(1, 0.4))
    rows = record_epoch(tmp_path, row(2, 0.2, attempt=2))  # epoch 2 re-run after a failure
    assert [(r["epoch"], r["val_error"], r["attempt"]) for r in rows] == [
        (1, 0.4, 1),
        (2, 0.2, 2),
    ]
    assert read_metrics(tmp_path) == rows
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",") == list(METRIC_COLUMNS)


def test_best_val_error_without_model_is_infinite(tmp_path: Path) -> None:
    assert best_val_error(tmp_path) == math.inf
