"""Deploying and changing the pomona application through the Serve controller.

Everything goes through Ray (the controller actor, reached with Ray's token), never through an
endpoint on the inference port. Changes that only touch ``user_config`` (routing, batch sizes)
are applied by Serve with ``reconfigure``, without restarting a replica, so promotes and
traffic shifts drop no request. Ray must be initialised by the caller.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.exceptions import GetTimeoutError, RayActorError
from ray.serve._private.api import serve_start
from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
from ray.serve.context import _disconnect, _get_global_client
from ray.serve.schema import ServeDeploySchema

from pomona.cluster.runtime import connection_error, split_address
from pomona.errors import ConfigError, ModelNotFoundError
from pomona.serving.config import (
    APP_NAME,
    INGRESS_DEPLOYMENT,
    AppArgs,
    BatchSettings,
    Routing,
)
from pomona.serving.plan import plan_routing

logger = logging.getLogger(__name__)

_POLL_S = 0.5


@dataclass(frozen=True)
class DeploymentState:
    """One deployment of the application as the controller reports it."""

    name: str
    status: str
    replicas: int
    target_replicas: int


@dataclass(frozen=True)
class AppState:
    """The running pomona application: its arguments, routing and deployments.

    ``max_ongoing_requests`` is the ``api`` replicas' limit of requests worked on at once.
    """

    status: str
    message: str
    args: AppArgs
    routing: Routing
    max_ongoing_requests: int
    deployments: list[DeploymentState]


def validate_config(config: dict[str, Any]) -> ServeDeploySchema:
    """Check ``config`` the way ``serve deploy`` and KubeRay do.

    Raises:
        ConfigError: Serve's schema refuses it.
    """
    try:
        return ServeDeploySchema.model_validate(config)
    except ValueError as error:
        raise ConfigError(f"invalid Serve config: {error}") from None


def deploy(config: dict[str, Any], timeout_s: float = 120.0) -> None:
    """Start Serve if needed, apply ``config`` and wait until the application runs.

    Raises:
        ConfigError: the config is invalid, or the application failed to deploy or did not
            become healthy within ``timeout_s`` (the message carries Serve's reason).
    """
    schema = validate_config(config)
    client = _get_global_client(raise_if_no_controller_running=False) or serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        global_logging_config=schema.logging_config,
    )
    client.deploy_apps(schema)
    wait_running(timeout_s)


def wait_running(timeout_s: float) -> None:
    """Wait until the application is RUNNING and every deployment HEALTHY.

    Raises:
        ConfigError: it failed, or ``timeout_s`` passed first.
    """
    deadline = time.monotonic() + timeout_s
    status, message = "NOT_STARTED", ""
    unhealthy: dict[str, str] = {}  # deployment -> Serve's message
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        if app is not None:
            status, message = str(app.status.value), app.message
            unhealthy = {
                n: d.message for n, d in app.deployments.items() if d.status.value != "HEALTHY"
            }
            if status == "RUNNING" and not unhealthy:
                return
            if status in ("DEPLOY_FAILED", "UNHEALTHY"):
                break
        time.sleep(_POLL_S)
    reasons = "".join(f"; {n}: {line}" for n, m in unhealthy.items() if (line := _last_line(m)))
    raise ConfigError(
        f"the pomona Serve application is {status}: {message or 'no message'}{reasons}"
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_QUALIFIED = re.compile(r"^[\w.]+\.(\w*(?:Error|Exception)):")


def _last_line(message: str) -> str:
    """The last line of a Serve status message: for a replica that failed to start, the
    exception that ended it (``CheckpointError: ...``), after pages of traceback."""
    lines = [line.strip() for line in _ANSI.sub("", message).splitlines() if line.strip()]
    return _QUALIFIED.sub(r"\1:", lines[-1]) if lines else ""


def _details() -> dict[str, Any]:
    client = _get_global_client(raise_if_no_controller_running=False)
    details = client.get_serve_details() if client is not None else {}
    app = details.get("applications", {}).get(APP_NAME)
    if app is None or app.get("deployed_app_config") is None:
        raise ModelNotFoundError(
            "no pomona Serve application is running on this Ray cluster; start one with "
            "`pomona serve MODEL...` (and pass its --address)"
        )
    return details


def _plain(value: object) -> str:
    # The controller's details hold enums (ApplicationStatus.RUNNING); show their value.
    return str(getattr(value, "value", value))


def state() -> AppState:
    """What is served now.

    Raises:
        ModelNotFoundError: no pomona application runs on this cluster.
        ConfigError: it has no ``api`` deployment yet (Serve is still building it, or the
            build failed; the message carries Serve's reason).
    """
    app = _details()["applications"][APP_NAME]
    config = app["deployed_app_config"]
    if INGRESS_DEPLOYMENT not in app.get("deployments", {}):
        reason = _last_line(app.get("message", "")) or "no message"
        raise ConfigError(f"the pomona Serve application is {_plain(app['status'])}: {reason}")
    # As Serve applies it: the config's value, else the code's (the routing the application
    # builder planned when a config gives no user_config), else Serve's own default.
    applied = app["deployments"][INGRESS_DEPLOYMENT]["deployment_config"]
    deployments = [
        DeploymentState(
            name=name,
            status=_plain(info["status"]),
            replicas=sum(r["state"] == "RUNNING" for r in info.get("replicas", [])),
            target_replicas=int(info.get("target_num_replicas", 0)),
        )
        for name, info in sorted(app.get("deployments", {}).items())
    ]
    return AppState(
        status=_plain(app["status"]),
        message=app.get("message", ""),
        args=AppArgs.model_validate(config["args"]),
        routing=Routing.model_validate(applied["user_config"]),
        max_ongoing_requests=int(applied["max_ongoing_requests"]),
        deployments=deployments,
    )


def apply_routing(
    routing: Routing, timeout_s: float = 60.0, max_ongoing_requests: int | None = None
) -> None:
    """Give the running replicas a new routing table and, if given, a new limit of requests
    each works on at once (both a ``reconfigure``; no restart)."""
    details = _details()
    config = details["applications"][APP_NAME]["deployed_app_config"]
    for entry in config["deployments"]:
        if entry["name"] == INGRESS_DEPLOYMENT:
            entry["user_config"] = routing.model_dump(mode="json")
            if max_ongoing_requests is not None:
                entry["max_ongoing_requests"] = max_ongoing_requests
    http = details.get("http_options") or {}
    deploy(
        {
            "proxy_location": details.get("proxy_location") or "HeadOnly",
            "http_options": {k: http[k] for k in ("host", "port") if k in http},
            "applications": [config],
        },
        timeout_s,
    )


def apply_batch(name: str, settings: BatchSettings, timeout_s: float = 60.0) -> None:
    """Change model ``name``'s batch settings and wait (a ``reconfigure``; no restart).

    The replicas' ``max_ongoing_requests`` stays as it is (``pomona serve batch`` moves it with
    the batches: :func:`pomona.serving.config.ongoing_after_change`).

    Raises:
        ModelNotFoundError: the model is not served.
    """
    apply_routing(state().routing.with_batch(name, settings), timeout_s)


def refresh_routing(timeout_s: float = 60.0) -> Routing:
    """Re-read aliases from the registry (after a promote) and apply the resulting routing."""
    current = state()
    routing = plan_routing(current.args, previous=current.routing)
    apply_routing(routing, timeout_s)
    return routing


def delete(timeout_s: float = 60.0) -> bool:
    """Delete the pomona application (its replicas drain first), leaving Serve and other
    applications running.

    No call into Ray here waits without a bound, and none is left behind: a thread left
    waiting inside Ray's core worker could crash the process when the caller shuts Ray down.

    Returns:
        True once it is deleted; False, without waiting any longer, as soon as Ray's GCS stops
        accepting connections or Serve's controller is gone. A TERM sent to the whole process
        group (systemd's default ``KillMode``, ``timeout``) stops Ray's own processes too, and
        an unbounded call to them would wait for Ray's 60 s GCS timeout, which then aborts the
        process.

    Raises:
        TimeoutError: the application was still there after ``timeout_s``.
    """
    host, port = split_address(ray.get_runtime_context().gcs_address)
    controller = _get_global_client()._controller
    serve.delete(APP_NAME, _blocking=False)  # sends the request; waiting is done here
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        asked = time.monotonic()
        try:
            details = ray.get(controller.get_serve_instance_details.remote(), timeout=_POLL_S)
        except GetTimeoutError:
            pass
        except RayActorError:
            return False
        else:
            if APP_NAME not in details.get("applications", {}):
                return True
        if port is not None and connection_error(host, port, _POLL_S) is not None:
            return False
        time.sleep(max(0.0, asked + _POLL_S - time.monotonic()))
    raise TimeoutError(f"the pomona Serve application was not deleted within {timeout_s:.0f} s")


def shutdown(timeout_s: float = 60.0) -> None:
    """Shut Serve down (all applications, proxies and the controller) and wait for it.

    ``serve.shutdown()`` waits on a controller call that only the controller's exit ends; Ray
    reports that call as a failed task on the driver's stdout, the one line from Ray on an
    otherwise clean stop. Here the controller is told to shut down, and its exit is awaited by
    looking its name up, with no call in flight.
    """
    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return
    ray.get(client._controller.graceful_shutdown.remote(wait=False))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            break
        time.sleep(_POLL_S)
    else:
        logger.warning("Serve's controller did not stop within %.0f s", timeout_s)
    _disconnect()  # forget the client of the controller that is gone
