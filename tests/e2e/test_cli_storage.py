"""Datasets, runs and models named by URI, from ingest through training to evaluation and the
registry: ``file://`` URIs, and an object store (``store://``, see ``object_store`` in
tests/conftest.py) that takes pomona's staging-and-upload path, with Ray Train checkpointing
through its filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomona.data.shards import read_manifest
from pomona.models.artifact import read_card
from pomona.train.run_dir import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

_INGEST = ("--image-size", "16", "--channels", "1", "--workers", "1", "--shard-rows", "128")
_TRAIN = ("--workers", "1", "--batch-size", "32", "--set", "checkpoint.keep=1")


def test_file_uris_from_ingest_to_the_registry(
    pomona, ray_session: None, digits_folder: Path, tmp_path: Path
) -> None:
    data, run = f"file://{tmp_path}/ds", f"file://{tmp_path}/run"
    result = pomona("ingest", digits_folder, data, *_INGEST)
    assert result.code == 0, result.err
    assert flat(f"dataset {data}: 10 classes") in flat(result.out)
    assert read_manifest(tmp_path / "ds").ingested == 600

    result = pomona("train", "--data", data, "--out", run, "--epochs", "1", *_TRAIN)
    assert result.code == 0, result.err
    assert flat(f"model at {run}/model.safetensors") in flat(result.out)
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]

    report = tmp_path / "report"
    result = pomona("evaluate", run, "--data", data, "--out", report, "--gallery", "1")
    assert result.code == 0, result.err
    assert (report / "report.json").is_file()

    registry = f"file://{tmp_path}/registry"
    result = pomona("--registry", registry, "registry", "register", run, "--name", "digits")
    assert result.code == 0, result.err
    registered = f"registered digits:1 (simple_cnn, 10 classes) from {tmp_path}/run"
    assert flat(registered) in flat(result.out)


def test_an_object_store_from_ingest_through_resume_to_the_registry(
    pomona,
    ray_session: None,
    object_store: Path,
    digits_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POMONA_CACHE", str(tmp_path / "cache"))
    result = pomona("ingest", digits_folder, "store://bucket/ds", *_INGEST)
    assert result.code == 0, result.err
    assert read_manifest(object_store / "bucket/ds").ingested == 600

    args = ("--data", "store://bucket/ds", *_TRAIN)
    result = pomona("train", *args, "--out", "store://bucket/run", "--epochs", "1")
    assert result.code == 0, result.err
    assert flat("model at store://bucket/run/model.safetensors") in flat(result.out)
    stored = object_store / "bucket/run"
    assert {"config.yaml", "metrics.csv", "curves.png", "model.safetensors", "model.json"} <= {
        p.name for p in stored.iterdir()
    }
    # Ray Train wrote its checkpoint through the store's filesystem, not a local directory.
    assert list((stored / "checkpoints").rglob("epoch-0001/train_state.pt"))

    result = pomona("train", "--resume", "store://bucket/run", "--epochs", "2", "--workers", "1")
    assert result.code == 0, result.err
    rows = read_metrics(stored)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[1]["attempt"] == 2  # continued from the stored checkpoint, not from scratch
    assert read_card(stored).metrics["epoch"] in (1, 2)

    report = tmp_path / "report"
    result = pomona(
        "evaluate", "store://bucket/run", "--data", "store://bucket/ds", "--out", report,
        "--gallery", "1",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert flat("of store://bucket/ds") in flat(result.out)

    result = pomona(
        "--registry", tmp_path / "registry", "registry", "register", "store://bucket/run",
        "--name", "digits", "--report", report,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "registered digits:1" in result.out


def flat(text: str) -> str:
    """``text`` without whitespace: Rich wraps long lines at the terminal width, even mid-word."""
    return "".join(text.split())
