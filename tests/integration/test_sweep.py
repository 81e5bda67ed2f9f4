"""Ray Tune sweeps over the real trainer: results, ASHA, failed trials, resume after SIGKILL."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pomona.config import validate
from pomona.train.run_dir import read_metrics
from pomona.tune.config import SweepConfig
from pomona.tune.progress import read_progress
from pomona.tune.sweep import read_sweep_config, run_sweep

pytestmark = pytest.mark.ray


def sweep_config(data: Path, out: Path, space: dict[str, str], **updates: object) -> SweepConfig:
    train = {
        "data": str(data),
        "model": {"architecture": "simple_cnn"},
        "epochs": 2,
        "batch_size": 32,
        "num_workers": 1,
        "max_failures": 0,  # a diverged trial fails at once instead of being retried
    }
    base = {"out": str(out), "train": train, "space": space, "trials": 1, "seed": 0}
    return validate(SweepConfig, {**base, **updates}, "test sweep")


def test_sweep_records_trials_stops_poor_ones_and_survives_a_crashing_one(
    ray_session: None, digits_dataset: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    # In grid order, one trial at a time: a good rate, one ASHA cuts at the first rung (it
    # trails the first trial after epoch 1), and one whose loss becomes NaN.
    config = sweep_config(
        digits_dataset,
        sweep_dir,
        {"lr": "grid(0.1, 0.001, 1e6)"},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
        concurrent_trials=1,
    )
    results = run_sweep(config)

    by_rate = {r.settings["learning_rate"]: r for r in results}
    assert set(by_rate) == {0.1, 0.001, 1e6}
    good, slow, diverged = by_rate[0.1], by_rate[0.001], by_rate[1e6]
    assert (good.status, good.epochs) == ("completed", 2)
    assert (slow.status, slow.epochs) == ("stopped", 1)  # ASHA stopped it early
    assert diverged.status == "failed"
    assert diverged.error is not None and "TrainingError" in diverged.error
    assert "training loss is nan" in diverged.error

    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = {row["trial"]: row for row in csv.DictReader(handle)}
    assert rows[diverged.trial]["status"] == "failed" and rows[slow.trial]["epochs"] == "1"
    best = sweep_dir / "best"
    assert best.is_symlink() and best.resolve() == Path(good.run_dir).resolve()
    for name in ("metrics.csv", "curves.png", "model.safetensors", "model.json"):
        assert (best / name).is_file()
    report = (sweep_dir / "report.html").read_text()
    assert "training loss is nan" in report and good.trial in report
    assert {s.status for s in read_progress(sweep_dir)} == {"TERMINATED", "ERROR"}


def test_sweep_resumes_after_its_driver_is_killed_without_rerunning_finished_trials(
    ray_session: None, digits_dataset: Path, tmp_path: Path
) -> None:
    import ray

    sweep_dir = tmp_path / "sweep"
    args = [
        "--address", ray.get_runtime_context().gcs_address,
        "sweep", "--data", str(digits_dataset), "--out", str(sweep_dir),
        "--model", "simple_cnn", "--epochs", "5", "--workers", "1", "--concurrent", "1",
        "--scheduler", "fifo", "--trials", "1", "--space", "lr=grid(0.1, 0.05)",
        "--set", "train.batch_size=32",
    ]  # fmt: skip
    # Tune saves its experiment state at most every 10 s by default; every second here, so the
    # first trial's completion is on disk before the driver dies during the second trial.
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    code = f"import sys; from pomona.cli import main; main({args!r})"
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 400
        second: Path | None = None
        while time.monotonic() < deadline and driver.poll() is None:
            started = [p for p in (sweep_dir / "trials").glob("*") if read_metrics(p)]
            if len(started) == 2:
                second = max(started, key=lambda p: p.name)
                break
            time.sleep(0.1)
        assert second is not None, (tmp_path / "driver.log").read_text()[-3000:]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)

    first = min((sweep_dir / "trials").glob("*"), key=lambda p: p.name)
    first_metrics = (first / "metrics.csv").read_bytes()
    interrupted_at = len(read_metrics(second))
    assert len(read_metrics(first)) == 5 and interrupted_at < 5

    results = run_sweep(read_sweep_config(sweep_dir), resume=True)

    assert [r.status for r in results] == ["completed", "completed"]
    assert (first / "metrics.csv").read_bytes() == first_metrics  # not run again
    rows = read_metrics(second)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    # Epochs before the kill ran in the first attempt; the rest continued from a checkpoint.
    assert int(rows[0]["attempt"]) == 1 and int(rows[-1]["attempt"]) == 2
    assert (sweep_dir / "best").is_symlink() and (sweep_dir / "report.html").is_file()
