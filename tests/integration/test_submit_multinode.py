"""`pomona submit train` on a real two-node Ray cluster (separate processes, 127.0.0.1).

Each node has 2 logical CPUs and each training worker reserves 1.5 (`cpus_per_worker`), so the
two workers cannot share a node: they must land on different nodes, and each node keeps 0.5
CPU for Ray Data.

When the non-head node is removed mid-training, the head alone (2 CPUs) cannot hold the
restarted group of two 1.5-CPU workers: Ray Train keeps trying to start it, and the test adds a
replacement node, as KubeRay's autoscaler would. The run then resumes from its last checkpoint.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_cluster import LocalCluster, local_cluster, pomona_cli

from pomona.cluster.submit import connect
from pomona.train.run_dir import read_metrics

pytestmark = pytest.mark.ray

SPREAD = ["--workers", "2", "--batch-size", "32", "--set", "cpus_per_worker=1.5",
          "--set", "threads_per_worker=1"]  # fmt: skip
JOB_ID = re.compile(r"submitted (raysubmit_\w+) to ")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(head_cpus=2, node_cpus=(2,)) as running:
        yield running


def training_worker_nodes(dashboard: str, submission_id: str) -> list[str]:
    """Node ids of the job's Ray Train workers, from Ray's state API (dead actors included)."""
    from ray.util.state import list_actors

    job_id = connect(dashboard).get_job_info(submission_id).job_id
    actors = list_actors(address=dashboard, filters=[("class_name", "=", "RayTrainWorker")],
                         detail=True, raise_on_missing_output=False)  # fmt: skip
    return [actor.node_id for actor in actors if actor.job_id == job_id]


def test_two_workers_train_on_two_nodes_and_survive_losing_one(
    cluster: LocalCluster, digits_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["submit", "train", "--address", cluster.dashboard, "--data", digits_dataset,
            "--out", run, "--epochs", "8", *SPREAD]  # fmt: skip
    outcome: list[subprocess.CompletedProcess[str] | Exception] = []

    def submit() -> None:
        try:
            outcome.append(pomona_cli(*args, timeout_s=150))  # a hang fails, bounded
        except subprocess.TimeoutExpired as error:
            outcome.append(error)

    submitter = threading.Thread(target=submit)
    submitter.start()
    deadline = time.monotonic() + 120
    while not read_metrics(run) and submitter.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    before_loss = {int(row["epoch"]) for row in read_metrics(run)}  # each one checkpointed
    assert before_loss, f"no epoch finished before the node was to be removed: {outcome}"
    (node,) = cluster.cluster.worker_nodes
    cluster.cluster.remove_node(node, allow_graceful=False)
    cluster.cluster.add_node(num_cpus=2)
    submitter.join()

    (result,) = outcome
    assert isinstance(result, subprocess.CompletedProcess), result
    assert result.returncode == 0, result.stderr
    rows = {int(row["epoch"]): int(row["attempt"]) for row in read_metrics(run)}
    assert sorted(rows) == list(range(1, 9)), rows
    # Epochs checkpointed before the loss were kept (attempt 1), and the rest ran again from
    # the last checkpoint (its attempt + 1): nothing but the unfinished epoch was lost.
    assert all(rows[epoch] == 1 for epoch in before_loss), (before_loss, rows)
    assert rows[8] >= 2, rows
    assert (run / "model.safetensors").is_file()
    # Both attempts spread their two workers over two nodes: the head, the lost node and its
    # replacement all ran one.
    nodes = training_worker_nodes(cluster.dashboard, JOB_ID.search(result.stdout).group(1))
    assert len(set(nodes)) == 3, nodes
