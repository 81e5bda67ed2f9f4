"""jobs/train.py runs as a Ray job submitted through the Jobs API (as on a cluster).

Needs the dashboard agent's default port (52365) free: a second Ray cluster on the same machine
holds it and its jobs agent never starts ("No available agent to submit job").
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from pomona.train.run_dir import read_metrics

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]


def test_train_job_submitted_through_jobs_api(
    ray_session: None, digits_dataset: Path, tmp_path: Path
) -> None:
    from ray._private.worker import get_dashboard_url
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(f"http://{get_dashboard_url()}")
    run = tmp_path / "run"
    entrypoint = (
        f"{sys.executable} {REPO / 'jobs' / 'train.py'} --data {digits_dataset} --out {run} "
        "--epochs 1 --workers 1 --batch-size 32"
    )
    job = submit_when_agent_ready(client, entrypoint)
    deadline = time.monotonic() + 300
    status = client.get_job_status(job)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1)
        status = client.get_job_status(job)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs
    assert [int(r["epoch"]) for r in read_metrics(run)] == [1]
    assert (run / "model.safetensors").is_file()
    assert "best epoch 1" in logs


def submit_when_agent_ready(client: object, entrypoint: str, timeout_s: float = 90) -> str:
    """Submit, retrying while the dashboard agent that accepts jobs is still starting up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint)  # type: ignore[attr-defined]
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(2)
