"""The run directory: metrics rows, which model is published, a failed start cleaned up."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_models import make_model_dir

from pomona.models.artifact import read_card
from pomona.train.config import TrainConfig
from pomona.train.run_dir import (
    BEST_DIR,
    METRIC_COLUMNS,
    discard_if_unstarted,
    publish_best,
    read_config,
    read_metrics,
    record_epoch,
    write_config,
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
    return make_model_dir(directory, metrics={"epoch": epoch, "val_error": val_error})


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


def test_a_tie_publishes_the_earlier_epoch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = model_dir(tmp_path / "c4", 4, 0.25)
    model_dir(checkpoint / BEST_DIR, 1, 0.25)  # as good, and earlier
    assert publish_best(checkpoint, run)
    assert published_epoch(run) == 1
    assert not publish_best(model_dir(tmp_path / "c5", 5, 0.25), run)
    assert published_epoch(run) == 1


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


def test_a_remote_run_is_staged_locally_and_uploaded(object_store: Path, tmp_path: Path) -> None:
    from pomona.location import as_location
    from pomona.train.run_dir import CURVES_FILE, METRICS_FILE, RunFiles

    run = as_location("store://bucket/run")
    earlier = tmp_path
    record_epoch(earlier, row(1, 0.4))
    (run / METRICS_FILE).upload(earlier / METRICS_FILE)  # a run being resumed
    files = RunFiles(run)
    staging = files.directory()
    assert staging != object_store and read_metrics(staging)[0]["epoch"] == 1
    record_epoch(staging, row(2, 0.3))
    (staging / CURVES_FILE).write_bytes(b"png")
    files.sync([METRICS_FILE, CURVES_FILE])
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert (object_store / "bucket/run" / CURVES_FILE).read_bytes() == b"png"

    discard_if_unstarted(run, keep_directory=False)  # it has epochs: kept
    assert run.exists()
    (object_store / "bucket/run" / METRICS_FILE).unlink()
    discard_if_unstarted(run, keep_directory=False)
    assert not run.exists()


def test_a_local_run_is_its_own_staging(tmp_path: Path) -> None:
    from pomona.location import as_location
    from pomona.train.run_dir import RunFiles

    files = RunFiles(as_location(tmp_path))
    assert files.directory() == tmp_path
    files.sync(["metrics.csv"])  # nothing to upload, and no file needed


def test_the_saved_config_holds_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started with relative paths resumes from any other working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    write_config(Path("run"), TrainConfig(data="ds", out="run", epochs=3))
    monkeypatch.chdir("/")
    saved = read_config(tmp_path / "run")
    assert (saved.data, saved.out, saved.epochs) == (str(tmp_path / "ds"), str(tmp_path / "run"), 3)
