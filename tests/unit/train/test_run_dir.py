"""The run directory: metrics rows, which model is published, a failed start cleaned up."""

from __future__ import annotations

from pathlib import Path

from pomona.data.manifest import Preprocessing
from pomona.models.artifact import read_card, save_model
from pomona.models.zoo import build_model
from pomona.train.run_dir import (
    BEST_DIR,
    METRIC_COLUMNS,
    discard_if_unstarted,
    publish_best,
    read_metrics,
    record_epoch,
)


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


def model_dir(directory: Path, epoch: int, val_error: float) -> Path:
    save_model(
        directory,
        build_model("simple_cnn", 2, 1),
        architecture="simple_cnn",
        classes=["a", "b"],
        preprocessing=Preprocessing(height=8, width=8, channels=1),
        metrics={"epoch": epoch, "val_error": val_error},
    )
    return directory


def published_epoch(run: Path) -> int:
    return int(read_card(run).metrics["epoch"])


def test_the_best_model_of_a_checkpoint_is_published_only_when_it_improves(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    publish_best(model_dir(tmp_path / "c2", 2, 0.30), run)  # nothing published yet
    assert published_epoch(run) == 2
    # Checkpoint of epoch 4, carrying epoch 3 (between checkpoints), which was better.
    checkpoint = model_dir(tmp_path / "c4", 4, 0.25)
    model_dir(checkpoint / BEST_DIR, 3, 0.20)
    publish_best(checkpoint, run)
    assert published_epoch(run) == 3
    publish_best(model_dir(tmp_path / "c6", 6, 0.22), run)  # worse than epoch 3
    assert published_epoch(run) == 3
    assert sorted(p.name for p in run.iterdir()) == ["model.json", "model.safetensors"]


def test_a_run_without_an_epoch_is_discarded(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    (fresh / "checkpoints").mkdir(parents=True)
    (fresh / "config.yaml").write_text("epochs: 1\n")
    discard_if_unstarted(fresh, keep_directory=False)
    assert not fresh.exists()

    given = tmp_path / "given"  # an empty --out the user made: emptied, not removed
    (given / "checkpoints").mkdir(parents=True)
    (given / "config.yaml").write_text("epochs: 1\n")
    discard_if_unstarted(given, keep_directory=True)
    assert given.is_dir() and not any(given.iterdir())

    started = tmp_path / "started"
    started.mkdir()
    record_epoch(started, row(1, 0.4))
    discard_if_unstarted(started, keep_directory=False)
    assert read_metrics(started)  # resumable, so kept
