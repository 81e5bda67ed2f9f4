"""``pomona serve``: the Serve config it builds, and a real server stopped with Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
import torch
import yaml
from ray.serve.schema import ServeDeploySchema
from support.local_cluster import local_cluster, pomona_cli

from pomona.cluster.runtime import free_ports
from pomona.registry import Registry
from pomona.serving.config import AppArgs

pytestmark = pytest.mark.e2e


@pytest.fixture
def registry(digits_model: Path, tmp_path: Path) -> Path:
    """``digits`` version 1 marked production."""
    root = tmp_path / "registry"
    Registry(root).register(digits_model, "digits")
    Registry(root).set_alias("digits", 1, "production")
    return root


def test_build_writes_a_config_serve_accepts(pomona, registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "serve" / "pomona.yaml"
    result = pomona(
        "--registry", registry, "serve", "build", "digits", "--out", out, "--max-batch-size", "8",
        "--max-replicas", "3", "--torch-threads", "1", "--concurrent-batches", "3",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out == f"wrote {out}\n"
    config = ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    (app,) = config.applications
    assert app.import_path == "pomona.serving.app:build_app"
    args = AppArgs.model_validate(app.args)
    assert args.references == ["digits"]
    assert (args.torch_threads, args.concurrent_batches) == (1, 3)
    assert args.batch.max_batch_size == 8
    (api,) = app.deployments
    # No routing: the registry it is deployed against is read when Serve deploys it.
    assert "user_config" not in api.model_fields_set
    assert config.http_options.host == "127.0.0.1"
    assert api.autoscaling_config["max_replicas"] == 3

    again = pomona("--registry", registry, "serve", "build", "digits", "--out", out)
    assert again.code == 0, again.err  # an earlier build's file is replaced
    mine = tmp_path / "mine.yaml"
    mine.write_text("the user's: yaml\n")
    refused = pomona("--registry", registry, "serve", "build", "digits", "--out", mine)
    assert refused.code == 2
    assert "mine.yaml exists and was not written by `pomona serve build`" in refused.err
    assert mine.read_text() == "the user's: yaml\n"


def test_use_gpu_gives_each_replica_a_gpu(pomona, registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.yaml"
    result = pomona("--registry", registry, "serve", "build", "digits", "--use-gpu", "--out", out)
    assert result.code == 0, result.err
    config = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(config)
    (api,) = config["applications"][0]["deployments"]
    assert api["ray_actor_options"] == {"num_cpus": 0.0, "num_gpus": 1}


def test_build_into_a_folder_that_cannot_be_created_is_one_error_line(
    pomona, registry: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = pomona("--registry", registry, "serve", "build", "digits", "--out", blocker / "x.yaml")
    assert result.code == 2, result.err
    assert (
        result.err == f"error: {blocker} is a file where a folder is needed; choose another path\n"
    )
    into_a_folder = pomona("--registry", registry, "serve", "build", "digits", "--out", tmp_path)
    assert into_a_folder.code == 2
    assert into_a_folder.err == f"error: {tmp_path}: Is a directory\n"
    assert blocker.read_text() == "not a directory"


def test_bad_references_and_splits_are_one_line_errors(
    pomona, registry: Path, tmp_path: Path, ray_forbidden: None
) -> None:
    # `pomona serve` resolves the references before Ray starts.
    missing = pomona("--registry", registry, "serve", "digits@canary")
    assert missing.code == 2 and "digits has no alias 'canary'" in missing.err
    # The build reads no registry: what a reference points at is resolved at deploy time.
    elsewhere = tmp_path / "cluster-registry"
    out = tmp_path / "built.yaml"
    built = pomona("--registry", elsewhere, "serve", "build", "digits@canary", "--out", out)
    assert built.code == 0, built.err
    assert not elsewhere.exists()
    malformed = pomona("--registry", registry, "serve", "build", "Digits!", "--out", out)
    assert malformed.code == 2 and "Digits!" in malformed.err
    twice = pomona("--registry", registry, "serve", "build", "digits", "digits:1", "--out", out)
    assert twice.code == 2 and "served once" in twice.err
    replicas = ("--min-replicas", "3", "--max-replicas", "2")
    floor = pomona("--registry", registry, "serve", "build", "digits", *replicas, "--out", out)
    assert floor.code == 2 and "\n  --min-replicas 3 exceeds --max-replicas 2\n" in floor.err


@pytest.mark.parametrize("command", [("status",), ("promote", "digits", "2")])
def test_managing_without_a_server_address_shows_where_it_goes(command: tuple[str, ...]) -> None:
    # In a process of its own: this one may already be connected to the tests' Ray.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-c", "from pomona.cli import main; main()", "serve", *command],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"pomona --address ADDRESS serve {command[0]}`" in result.stderr


@pytest.mark.parametrize("option", ["--port", "--metrics-port"])
def test_a_taken_port_is_refused_before_ray_starts(registry: Path, option: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api, metrics = free_ports(2, besides={port})
        ports = {"--port": api, "--metrics-port": metrics, option: port}
        # A fresh process: no Ray of this test session's to join.
        result = pomona_cli(
            "--registry", registry, "serve", "digits", *(x for p in ports.items() for x in p),
            timeout_s=120,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    # Not Ray's start-up timeout or a failed Serve deployment, a minute later.
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): stop what uses it "
        f"or choose another {option}\n"
    )


def test_one_port_for_http_and_metrics_is_refused_before_ray_starts(registry: Path) -> None:
    (port,) = free_ports(1)
    result = pomona_cli("--registry", registry, "serve", "digits", "--port", port,
                        "--metrics-port", port, timeout_s=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: --metrics-port {port} is also the HTTP --port: give each its own\n"
    )


def test_a_corrupted_version_is_refused_before_ray_starts(pomona, registry: Path) -> None:
    weights = registry / "digits" / "versions" / "1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")
    api, metrics = free_ports(2)
    started = pomona_cli(
        "--registry", registry, "serve", "digits", "--port", api, "--metrics-port", metrics,
        timeout_s=120,
    )  # fmt: skip
    assert started.returncode == 2, started.stderr
    # Checked on the command line: not a failed Serve deployment after three replica starts.
    assert started.stderr.startswith("error: digits:1 in "), started.stderr
    assert "model.safetensors" in started.stderr
    assert started.stderr.rstrip().endswith("the file was modified or corrupted after registration")
    # A build reads no registry: the versions are chosen, and checked by each replica, where
    # and when the config is deployed.
    built = pomona("--registry", registry, "serve", "build", "digits", "--out", registry / "x.yaml")
    assert built.code == 0, built.err


def _cluster_processes(gcs_address: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(gcs_address in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def _replica_niceness(server_pid: int) -> list[int]:
    """Niceness of each Serve replica the server started (its children come and go: Ray's idle
    workers may exit while they are listed)."""
    found = []
    for process in psutil.Process(server_pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.cmdline()[:1] == ["ray::ServeReplica:pomona:api"]:
                found.append(process.nice())
    return found


def _assert_overload_is_refused_then_served(url: str, image: bytes) -> None:
    """A burst far over one replica's queue (the replica serves HTTP itself, no proxy) gets
    503 with Retry-After, never a timeout, and the next request is answered."""

    def predict(_: int) -> requests.Response:
        return requests.post(
            f"{url}/v1/models/digits/predict",
            data=image,
            headers={"Content-Type": "image/png"},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=150) as pool:
        answers = list(pool.map(predict, range(450)))
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) == {200, 503}, codes
    assert all(a.headers["Retry-After"].isdigit() for a in answers if a.status_code == 503)
    assert predict(0).status_code == 200


def _background_server(
    registry: Path, port: int, *options: str, own_group: bool = False, address: str = ""
) -> subprocess.Popen[str]:
    """``pomona serve digits`` on ``port`` (metrics on the next), started as a script's background
    job starts it: with SIGINT ignored, which must stop it all the same. With ``address``, on
    that Ray cluster instead of a local Ray of its own."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pomona.cli import main; main()",
            *(("--address", address) if address else ()),
            "--registry",
            str(registry),
            "serve",
            "digits",
            "--port",
            str(port),
            "--metrics-port",
            str(port + 1),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        start_new_session=own_group,
    )


def _first_answer(server: subprocess.Popen[str], port: int, image: bytes) -> int | None:
    """The status of the first predict answer from ``server`` on ``port`` (polled until one is
    200, for up to 180 s), or None if the server exits first."""
    status = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server.poll() is None and status != 200:
        with contextlib.suppress(requests.ConnectionError):
            status = requests.post(
                f"http://127.0.0.1:{port}/v1/models/digits/predict",
                data=image,
                headers={"Content-Type": "image/png"},
                timeout=60,
            ).status_code
        time.sleep(0.05)
    return status


@pytest.mark.ray
def test_a_replica_given_a_gpu_answers_on_cuda_or_says_why_not(
    registry: Path, digits_folder: Path
) -> None:
    """On a cluster whose head declares a GPU (Ray does not check), Ray hands the replica GPU 0
    as on a GPU node. Where torch can use a GPU the replica answers on CUDA; elsewhere it cannot
    start, and ``pomona serve`` says why in one line."""
    port = 18000 + os.getpid() % 1000 + 60
    image = next(digits_folder.rglob("*.png")).read_bytes()
    with local_cluster(head_cpus=2, head_gpus=1) as running:
        server = _background_server(registry, port, "--use-gpu", address=running.cluster.address)
        try:
            if torch.cuda.is_available():
                assert _first_answer(server, port, image) == 200
                server.send_signal(signal.SIGTERM)
            # (Without CUDA, no request: Serve's proxy would hold it while the replica fails.)
            output, errors = server.communicate(timeout=180)
        finally:
            if server.poll() is None:
                server.kill()
    if torch.cuda.is_available():
        assert server.returncode == 0, errors
        assert output.strip().endswith("stopped"), output
    else:
        assert server.returncode == 2, errors
        assert errors.startswith("error: the pomona Serve application is DEPLOY_FAILED: "), errors
        assert errors.rstrip().endswith(
            "api: ConfigError: this replica was given GPU 0 but torch "
            f"{torch.__version__} finds no usable CUDA device: check the node's NVIDIA driver "
            "(nvidia-smi), or serve without GPUs"
        ), errors


@pytest.mark.ray
@pytest.mark.parametrize("to_group", [False, True], ids=["term", "term-to-process-group"])
def test_serve_answers_and_a_stop_signal_leaves_no_process(
    registry: Path, digits_folder: Path, to_group: bool
) -> None:
    """A TERM stops the server cleanly (as Ctrl-C does: see the next test); so does a TERM to its
    whole process group (what systemd and ``timeout`` send), which stops Ray's own processes at
    the same moment."""
    port = 18000 + os.getpid() % 1000 + 2 * to_group
    # One image at a time, so that the burst below outruns the replica on any machine: batched,
    # the tiny model once answered as fast as the test's threads could send, and none was refused.
    one_at_a_time = ("--max-batch-size", "1", "--concurrent-batches", "1")
    server = _background_server(
        registry, port, "--max-queued", "1", *one_at_a_time, own_group=to_group
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            line = server.stdout.readline()
            lines.append(line)
            if line.startswith("Ctrl-C stops serving."):
                break
        output = "".join(lines)
        assert f"API:     http://127.0.0.1:{port}/v1/models" in output, output
        assert f"Metrics: http://127.0.0.1:{port + 1}/metrics" in output
        (gcs_address,) = re.findall(r"pomona --address (\S+) serve", output)
        image = next(digits_folder.rglob("*.png")).read_bytes()
        answer = requests.post(
            f"http://127.0.0.1:{port}/v1/models/digits/predict",
            data=image,
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["version"] == 1
        _assert_overload_is_refused_then_served(f"http://127.0.0.1:{port}", image)
        assert _cluster_processes(gcs_address)
        # The replica is not reniced below Ray's own processes (Ray's default for workers).
        assert _replica_niceness(server.pid) == [0]
        if to_group:
            os.killpg(server.pid, signal.SIGTERM)
        else:
            server.send_signal(signal.SIGTERM)
        rest, errors = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, errors
    # A clean stop prints pomona's last line and nothing from Ray (no failed-task line for the
    # Serve controller that goes down with the cluster).
    assert rest.strip() == "stopped"
    if to_group:
        # Told, and without waiting for Ray's 60 s GCS timeout, which would abort the process.
        # (Ray's core worker logs the calls it can no longer deliver meanwhile.)
        assert "requests in flight were not drained" in errors, errors
    else:
        assert errors == "", errors
    deadline = time.monotonic() + 30
    while _cluster_processes(gcs_address) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _cluster_processes(gcs_address) == []


@pytest.mark.ray
def test_ctrl_c_as_soon_as_the_server_answers_stops_it_cleanly(
    registry: Path, digits_folder: Path
) -> None:
    """The first answer can come before the server says it is up: a Ctrl-C then (here to a
    background job, which inherits SIGINT ignored) still stops it, leaving no process."""
    port = 18000 + os.getpid() % 1000 + 40
    server = _background_server(registry, port)
    image = next(digits_folder.rglob("*.png")).read_bytes()
    try:
        _first_answer(server, port, image)
        ours = psutil.Process(server.pid).children(recursive=True)
        assert ours, "the server started no Ray process"
        server.send_signal(signal.SIGINT)
        output, errors = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, errors
    assert output.strip().endswith("stopped"), output
    assert errors == "", errors
    _, alive = psutil.wait_procs(ours, timeout=30)
    assert alive == []
