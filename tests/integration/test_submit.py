"""`pomona submit` and `pomona jobs` against a local Ray cluster with token authentication.

The cluster is this module's own (its own ports, see tests/support/local_cluster.py); the CLI
runs as a separate process, as a user runs it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_cluster import REPO, LocalCluster, local_cluster, pomona_cli

from pomona.cluster.runtime import free_ports
from pomona.cluster.submit import connect, wait
from pomona.train.run_dir import read_metrics

pytestmark = pytest.mark.ray

JOB_ID = re.compile(r"submitted (raysubmit_\w+) to ")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(head_cpus=2) as running:
        yield running


def test_submit_train_trains_as_pomona_train_does(
    cluster: LocalCluster, digits_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = pomona_cli("submit", "train", "--address", cluster.dashboard, "--data",
                        digits_dataset, "--out", run, "--epochs", "1", "--workers", "1",
                        "--batch-size", "32")  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = JOB_ID.search(result.stdout).group(1)
    assert "best epoch 1: val error" in result.stdout  # the job's own output, followed
    assert "INFO job_manager" not in result.stdout  # Ray's own log lines are behind -v
    assert result.stdout.rstrip().endswith(f"job {job_id} succeeded")
    assert [int(row["epoch"]) for row in read_metrics(run)] == [1]
    assert (run / "model.safetensors").is_file()

    listed = pomona_cli("jobs", "list", "--address", cluster.dashboard)
    assert re.search(rf"{job_id}\s.*SUCCEEDED", listed.stdout.replace("\n", " ")), listed.stdout
    status = pomona_cli("jobs", "status", job_id, "--address", cluster.dashboard)
    assert status.stdout.startswith(f"{job_id} SUCCEEDED")
    logs = pomona_cli("jobs", "logs", job_id, "--address", cluster.dashboard)
    assert "best epoch 1: val error" in logs.stdout


def test_a_failing_job_exits_2_with_one_error_line(cluster: LocalCluster, tmp_path: Path) -> None:
    result = pomona_cli("submit", "train", "--address", cluster.dashboard, "--data",
                        tmp_path / "missing", "--out", tmp_path / "run")  # fmt: skip
    assert result.returncode == 2
    job_id = JOB_ID.search(result.stdout).group(1)
    assert result.stderr.startswith(f"error: job {job_id} FAILED: ")
    assert "FAILED: error:" not in result.stderr  # the job's own `error:` is not repeated
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "error:" in result.stdout  # the job's own one-line error, streamed with its logs
    followed = pomona_cli("jobs", "logs", job_id, "--follow", "--address", cluster.dashboard)
    assert followed.returncode == 2
    assert followed.stderr.startswith(f"error: job {job_id} FAILED: "), followed.stderr
    unknown = pomona_cli("jobs", "status", "raysubmit_nope", "--address", cluster.dashboard)
    assert unknown.returncode == 2
    assert unknown.stderr.endswith(" `pomona jobs list` shows the jobs there.\n"), unknown.stderr


def test_a_job_left_running_carries_the_root_registry_and_says_how_to_follow_it(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    result = pomona_cli("-v", "--registry", registry, "submit", "train", "--address",
                        cluster.dashboard, "--data", tmp_path / "missing", "--out",
                        tmp_path / "run", "--no-follow", env={"POMONA_REGISTRY": None})  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = JOB_ID.search(result.stdout).group(1)
    follow = f"follow it with: pomona jobs logs {job_id} --follow --address {cluster.dashboard}"
    assert follow in result.stdout
    client = connect(cluster.dashboard)
    wait(client, job_id)
    env_vars = client.get_job_info(job_id).runtime_env["env_vars"]
    assert env_vars["POMONA_REGISTRY"] == str(registry)
    assert env_vars["POMONA_VERBOSE"] == "1"  # -v goes with the job too
    assert env_vars["COLUMNS"] == os.environ.get("COLUMNS", "80")  # this terminal's width
    stop = pomona_cli("jobs", "stop", job_id, "--address", cluster.dashboard)
    assert stop.stdout == f"{job_id} had already ended\n", stop.stderr
    # A $POMONA_REGISTRY of this machine stays here: the cluster's nodes have their own.
    result = pomona_cli("submit", "train", "--address", cluster.dashboard, "--data",
                        tmp_path / "missing", "--out", tmp_path / "run", "--no-follow",
                        env={"POMONA_REGISTRY": str(registry)})  # fmt: skip
    job_id = JOB_ID.search(result.stdout).group(1)
    wait(client, job_id)
    assert {"POMONA_REGISTRY", "POMONA_VERBOSE"}.isdisjoint(
        client.get_job_info(job_id).runtime_env["env_vars"]
    )


def test_an_address_given_wins_over_rays_address_variables(cluster: LocalCluster) -> None:
    elsewhere = f"http://127.0.0.1:{free_ports(1)[0]}"
    env = {"RAY_ADDRESS": elsewhere, "RAY_API_SERVER_ADDRESS": elsewhere}
    result = pomona_cli("jobs", "list", "--address", cluster.dashboard, env=env)
    assert result.returncode == 0, result.stderr


def test_wrong_token_is_one_error_line(cluster: LocalCluster) -> None:
    result = pomona_cli("jobs", "list", "--address", cluster.dashboard,
                        env={"RAY_AUTH_TOKEN": "not-the-token"})  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {cluster.dashboard} refused the Ray token")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_joining_with_the_wrong_token_is_refused_at_once(cluster: LocalCluster) -> None:
    # Joining the GCS (`serve status` and the other commands that run on a cluster) retried
    # 20 times, a second apart, and ended in a traceback.
    gcs = cluster.cluster.address
    result = pomona_cli("--address", gcs, "serve", "status",
                        env={"RAY_AUTH_TOKEN": "not-the-token"}, timeout_s=15)  # fmt: skip
    assert result.returncode == 2
    # Ray's C++ client warns once before the error line.
    assert result.stderr.splitlines()[-1].startswith(f"error: {gcs} refused the Ray token")
    assert "Traceback" not in result.stderr


def test_joining_reads_the_token_without_ray_auth_mode(cluster: LocalCluster) -> None:
    result = pomona_cli("--address", cluster.cluster.address, "serve", "status",
                        env={"RAY_AUTH_MODE": None})  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: no pomona Serve application is running"), result.stderr


@pytest.mark.parametrize("scheme", ["http://", ""], ids=["dashboard", "gcs"])
@pytest.mark.parametrize("command", [["submit", "ingest", "SRC", "OUT"], ["jobs", "list"]])
def test_unreachable_address_is_one_error_line(
    tmp_path: Path, scheme: str, command: list[str]
) -> None:
    # A GCS address (host:port) used to end, 40 s later, in a traceback from Ray's GCS client.
    (port,) = free_ports(1)
    address = f"{scheme}127.0.0.1:{port}"
    args = [{"SRC": tmp_path, "OUT": tmp_path / "ds"}.get(arg, arg) for arg in command]
    result = pomona_cli(*args, "--address", address)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: no Ray cluster answers at {address} (Connection refused): check that it is up "
        "and the address (--address or RAY_ADDRESS)\n"
    )


@pytest.mark.parametrize("answer", ["y\n", ""], ids=["yes", "no-terminal"])
def test_ctrl_c_while_following_asks_and_stops_the_job(
    cluster: LocalCluster, digits_dataset: Path, tmp_path: Path, answer: str
) -> None:
    command = [sys.executable, "-c", "from pomona.cli import main; main()", "submit", "train",
               "--address", cluster.dashboard, "--data", str(digits_dataset), "--out",
               str(tmp_path / "run"), "--epochs", "50", "--workers", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "platform")}
    from ray.job_submission import JobStatus

    with subprocess.Popen(command, cwd=REPO, env=env, text=True, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:  # fmt: skip
        first = process.stdout.readline()
        job_id = JOB_ID.search(first).group(1)
        process.stdout.readline()  # the job has started writing its logs: we are following
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(answer, timeout=120)
    assert process.returncode == 130, err
    assert f"stop job {job_id}?" in err
    client = connect(cluster.dashboard)
    if answer:
        assert f"stopping {job_id}" in err
    else:  # the question gets no answer (end of input): the job is left running, and said so
        assert f"{job_id} keeps running; follow it with: pomona jobs logs {job_id}" in err
        assert client.stop_job(job_id)
    assert wait(client, job_id) == JobStatus.STOPPED
