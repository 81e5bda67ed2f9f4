"""Ray Jobs API submission: ship the project to a cluster and run a ``jobs/`` script there.

The job's runtime environment carries the project: the checkout as ``working_dir`` (so
``python jobs/train.py`` and relative config paths resolve as they do locally), with its
``platform/`` first on ``PYTHONPATH``, so the job's driver and every Ray worker it starts import
this checkout's ``pomona``, not whatever version the cluster has installed. (Not ``py_modules``:
Ray applies ``excludes`` inside each module too, and excluding the top-level ``data/`` would
drop ``pomona/data``.)

Ray token authentication stays on: the client reads the token where Ray does
(``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pomona
from pomona.cluster.entrypoints import JobCommand, job_entrypoint
from pomona.cluster.runtime import check_reachable, token_refused, use_token_if_available
from pomona.errors import ClusterError

if TYPE_CHECKING:
    from ray.job_submission import JobStatus, JobSubmissionClient

logger = logging.getLogger(__name__)

#: Never uploaded with the job (gitignored files are skipped too: Ray honours .gitignore).
#: Anchored at the checkout's root: ``platform/pomona/data`` must ship.
EXCLUDES = ["/.venv/", "/.git/", "/data/", "__pycache__/", "*.egg-info/"]
#: Loggers of the Jobs client that set their own INFO level (uploads, websockets).
_CLIENT_LOGGERS = ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk")
#: Environment variables Ray's Jobs client reads an address from, over the one it is given,
#: in the order it reads them.
ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
#: How long to retry while a freshly started cluster's job agent is not up yet.
AGENT_WAIT_S = 60.0


def project_root() -> Path:
    """The checkout this ``pomona`` was imported from (it holds ``jobs/``).

    Raises:
        ClusterError: pomona is installed without its checkout (no ``jobs/`` beside it).
    """
    root = Path(pomona.__file__).resolve().parents[2]
    if not (root / "jobs").is_dir():
        raise ClusterError(
            f"pomona at {root} has no jobs/ folder: run `pomona submit` from a checkout of the "
            "project (pip install -e .)"
        )
    return root


def job_runtime_env(root: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The runtime environment that ships the checkout at ``root`` with the job, with the
    environment variables ``env`` set for it."""
    # Relative: Ray starts job processes inside the unpacked working_dir, and Python's site
    # module makes sys.path entries absolute at start-up.
    env_vars = {**(env or {}), "PYTHONPATH": "platform"}
    return {"working_dir": str(root), "excludes": EXCLUDES, "env_vars": env_vars}


@contextmanager
def cluster_errors(address: str | None) -> Iterator[None]:
    """Turn the Jobs client's connection, authentication and request errors into one line."""
    from ray.exceptions import AuthenticationError, RpcError

    where = address or "the local Ray cluster"
    try:
        yield
    except AuthenticationError as error:
        raise ClusterError(token_refused(where, str(error.message))) from None
    except ConnectionError:
        raise ClusterError(
            f"cannot reach the Ray dashboard at {where}; check the cluster is up and pass "
            "--address http://HOST:8265"
        ) from None
    except RpcError:  # an address without a scheme is read as the cluster's GCS (HOST:6379)
        raise ClusterError(
            f"no Ray GCS answers at {where}; for the Jobs API pass the dashboard's address, "
            "--address http://HOST:8265"
        ) from None
    except (RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0]
        if "does not exist" in reason:  # an unknown job id
            reason += " `pomona jobs list` shows the jobs there."
        raise ClusterError(f"{where}: {reason}") from None


def connect(address: str | None, *, quiet: bool = True) -> JobSubmissionClient:
    """A Jobs API client for ``address`` (``http://HOST:8265``; None finds the local cluster).

    Args:
        address: the cluster's dashboard URL.
        quiet: keep the client's INFO chatter (packaging, uploads, websockets) off the terminal.

    Raises:
        ClusterError: unreachable address, or the cluster refused the token.
    """
    use_token_if_available()
    from ray.job_submission import JobSubmissionClient

    if quiet:
        for name in _CLIENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)

    overridden: list[str] = []
    if address is not None:
        check_reachable(address)
        # Ray's client prefers $RAY_API_SERVER_ADDRESS and $RAY_ADDRESS to the address it is
        # given; an address the user passed wins here.
        overridden = [name for name in ADDRESS_VARIABLES if name in os.environ]
    environment = {name: os.environ.pop(name) for name in overridden}
    try:
        with cluster_errors(address):
            return JobSubmissionClient(address)
    finally:
        os.environ.update(environment)


def submit(
    client: JobSubmissionClient,
    command: JobCommand,
    args: list[str],
    root: Path,
    env: Mapping[str, str] | None = None,
) -> str:
    """Submit ``jobs/<command>.py ARGS`` with the checkout at ``root`` and the environment
    variables ``env``; returns the job id.

    Retries for up to :data:`AGENT_WAIT_S` while the cluster's job agent is still starting.
    """
    entrypoint = job_entrypoint(command, args)
    runtime_env = job_runtime_env(root, env)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            with cluster_errors(client.get_address()):
                return client.submit_job(
                    entrypoint=entrypoint,
                    runtime_env=runtime_env,
                    metadata={"pomona_command": command},
                )
        except ClusterError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            logger.info("the cluster's job agent is not up yet; retrying")
            time.sleep(2)


def follow(client: JobSubmissionClient, job_id: str, write: Callable[[str], None]) -> JobStatus:
    """Stream the job's logs to ``write`` until it ends; returns its final status."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    with cluster_errors(client.get_address()):
        asyncio.run(tail())
        return wait(client, job_id)


def wait(client: JobSubmissionClient, job_id: str, poll_s: float = 0.5) -> JobStatus:
    """Poll until the job reaches a terminal status and return it."""
    with cluster_errors(client.get_address()):
        status = client.get_job_status(job_id)
        while not status.is_terminal():
            time.sleep(poll_s)
            status = client.get_job_status(job_id)
        return status


def failure_message(client: JobSubmissionClient, job_id: str) -> str:
    """One line saying how a job that did not succeed ended."""
    with cluster_errors(client.get_address()):
        info = client.get_job_info(job_id)
    reason = (info.message or "").strip().splitlines()
    # The last line is often pomona's own `error: ...` from the job: one `error:` is enough.
    last = reason[-1].removeprefix("error: ") if reason else ""
    return f"job {job_id} {info.status.value}" + (f": {last}" if last else "")
