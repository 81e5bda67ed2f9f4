"""Connecting to Ray: an existing cluster when an address is given, else an embedded local one.

The embedded default keeps every Ray process on loopback (127.0.0.1), sends no usage statistics
and binds the dashboard to 127.0.0.1; Ray's token authentication stays on.

Quiet by default: Ray's own log lines (start-up, Ray Data's execution summaries and warnings)
go to Ray's session log directory only, so a successful command prints only pomona's output;
``log_to_driver`` (the CLI's ``-v``) shows them all on the terminal as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Collection

from pomona.errors import ClusterError, ConfigError

logger = logging.getLogger(__name__)

#: Environment for an embedded local Ray. Ray reads these when it is imported, so
#: :func:`use_local_ray_defaults` must run before the first ``import ray``. Token
#: authentication is Ray's default for a local cluster; naming it keeps it on and spares every
#: command the WARNING that Ray prints when it has to choose. Ray Train's controller polls its
#: workers every 2 s by default, so a run's start, each epoch's report and its end wait up to
#: 2 s each; on one machine a 0.5 s poll costs nothing and saves 1-3 s per run (every sweep
#: trial is a run). Ray Train also starts a preemption watcher process per run, which polls
#: whether a node is being drained (a spot instance reclaimed by the autoscaler); the embedded
#: Ray is one node that nothing drains, and the process costs about 0.7 s of CPU per run.
#: The raylet starts at most as many worker processes at once as there are CPUs, and prints a
#: warning on the driver's stdout ("... 4x the maximum expected startup concurrency") when
#: several times that many are alive. A sweep keeps two trials in flight on 2 CPUs, each with
#: about ten processes (Tune's trial actor, Ray Train's controller, worker and helpers, Ray
#: Data's coordinators): with 2 it warned 2-3 times per sweep, with 8 never.
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_worker_maximum_startup_concurrency": "8",
}


#: What a process joining a Ray on this machine's loopback needs: on Linux Ray otherwise takes
#: the machine's routable address as the driver's node IP and never reaches a GCS that listens
#: on 127.0.0.1 (``pomona serve status --address 127.0.0.1:PORT`` hung retrying).
LOOPBACK_ENV = {key: LOCAL_RAY_ENV[key] for key in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",)}
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def cluster_address(address: str | None = None) -> str | None:
    """The Ray cluster to join: ``address`` if given, else ``RAY_ADDRESS``, else None (local)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def split_address(address: str) -> tuple[str, int | None]:
    """Host and port of ``host:port`` or ``scheme://host:port[/path]``; the port is None when
    the address has none (``auto``, ``ray-head``) or it is not a number. An IPv6 host comes
    without its brackets (``[::1]:6379`` is ``("::1", 6379)``), as sockets take it."""
    target = address.split("://", 1)[-1].split("/", 1)[0]
    host, colon, port = target.rpartition(":")
    if not colon:
        return target, None
    return host.strip("[]"), int(port) if port.isdigit() else None


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Refuse at once a ``host:port`` (or ``scheme://host:port``) address nothing listens on.

    Ray's client and the Jobs client retry such an address for minutes and end in a traceback;
    a typo in ``--address`` or a cluster that is down deserves one line. ``auto`` and addresses
    without a port are left to Ray.

    Raises:
        ClusterError: nothing accepts a TCP connection at the address.
    """
    host, port = split_address(address)
    if not host or port is None:
        return
    error = connection_error(host, port, timeout_s)
    if error is not None:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({error.strerror or error}): check that it is "
            "up and the address (--address or RAY_ADDRESS)"
        )


def connection_error(host: str, port: int, timeout_s: float) -> OSError | None:
    """Why a TCP connection to ``host:port`` fails within ``timeout_s``; None if it opens."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        return error
    return None


def free_ports(count: int, besides: Collection[int] = ()) -> list[int]:
    """``count`` different TCP ports free on 127.0.0.1 now, none of them in ``besides``.

    Every probe stays bound until all ports are chosen: probed one at a time, the system may
    hand out the same port twice (Ray refuses two of its components on one port).
    """
    with contextlib.ExitStack() as probes:
        ports: list[int] = []
        while len(ports) < count:
            probe = probes.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            if port not in besides:
                ports.append(port)
        return ports


def use_local_ray_defaults(address: str | None = None) -> None:
    """Set :data:`LOCAL_RAY_ENV` unless joining a cluster, :data:`LOOPBACK_ENV` when joining
    one on this machine's loopback; the user's own values win."""
    joined = cluster_address(address)
    if joined is None:
        defaults = LOCAL_RAY_ENV
    elif split_address(joined)[0] in _LOOPBACK_HOSTS:
        defaults = LOOPBACK_ENV
    else:
        return
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def use_token_if_available() -> None:
    """Send the Ray token when there is one, as the ``ray`` CLI does, to join a cluster.

    A process that starts no Ray has token mode off unless ``RAY_AUTH_MODE`` says otherwise;
    Ray's own helper turns it on when a token is found (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``, where a local Ray writes its own). Its
    notice is not for this command's user, so it is kept off the terminal.
    """
    from ray._private.authentication import authentication_token_setup as setup

    setup_logger = logging.getLogger(setup.__name__)
    level = setup_logger.level
    setup_logger.setLevel(logging.ERROR)
    try:
        setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup_logger.setLevel(level)


def token_refused(where: str, reason: str) -> str:
    """The message for a cluster at ``where`` that refused this process's Ray token, with Ray's
    ``reason`` (its first line)."""
    first = reason.splitlines()[0].rstrip(":")
    return (
        f"{where} refused the Ray token ({first}); set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to "
        "the cluster's token (default ~/.ray/auth_token)"
    )


def _check_token(address: str) -> None:
    """Fail at once when the GCS at a ``host:port`` address refuses this process's Ray token:
    ``ray.init`` tries 20 times, a second apart, with a warning each time.

    Raises:
        ClusterError: the cluster refused the token.
    """
    if "://" in address or address == "auto":
        return
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        GcsClient(address=address)
    except AuthenticationError as error:
        raise ClusterError(token_refused(address, str(error.message))) from None


def ensure_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    log_to_driver: bool = False,
    metrics_export_port: int | None = None,
) -> None:
    """Initialise Ray once per process.

    Args:
        address: a cluster address (``ray://host:10001``, ``host:6379`` or ``auto``); None uses
            ``RAY_ADDRESS`` if set, else starts a local Ray bound to 127.0.0.1.
        num_cpus: CPUs of the local Ray (default: all); ignored when joining a cluster.
        log_to_driver: stream worker logs to this terminal (Ray writes them to its session
            log directory either way).
        metrics_export_port: port of the local Ray's Prometheus endpoint (default: Ray picks
            one); ignored when joining a cluster.

    Raises:
        ClusterError: the cluster address is a dashboard URL, nothing listens at it, or it
            refused the Ray token.
    """
    use_local_ray_defaults(address)
    address = cluster_address(address)
    if address and address.startswith(("http://", "https://")):
        raise ClusterError(
            f"{address} is a Ray dashboard (Jobs API) address, for `pomona submit` and "
            "`pomona jobs`; a command that runs here joins the cluster by its GCS address, "
            "HOST:6379, or ray://HOST:10001 (--address or RAY_ADDRESS)"
        )
    import ray

    if ray.is_initialized():
        return
    # Quiet mode keeps Ray's own chatter (start-up banners, Ray Data execution summaries and
    # warnings) off the terminal; everything still lands in Ray's session log directory.
    level = logging.INFO if log_to_driver else logging.ERROR
    if address:
        check_reachable(address)
        use_token_if_available()
        _check_token(address)
        logger.info("connecting to Ray at %s", address)
        try:
            ray.init(address=address, log_to_driver=log_to_driver, logging_level=level)
        except ConnectionError as error:
            # Ray's reason is a formatted traceback in the message of the error's cause.
            reason = str(error.__cause__ or error)
            if "InvalidAuthToken" not in reason:
                raise
            raise ClusterError(token_refused(address, "InvalidAuthToken")) from None
    else:
        # "local" always starts a new Ray: a bare ray.init() would join whatever cluster
        # /tmp/ray/ray_current_cluster names, even a dead one (then it waits for it forever);
        # `--address auto` joins a `ray start` cluster on purpose.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            dashboard_host="127.0.0.1",
            _metrics_export_port=metrics_export_port,
            log_to_driver=log_to_driver,
            logging_level=level,
        )
    logging.getLogger("ray").setLevel(level)
    _set_ray_data_console_level(level)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = log_to_driver


def check_local_gpus(
    needed: float, address: str | None, fewer: str, option: str = "--use-gpu"
) -> None:
    """Refuse work that needs ``needed`` GPUs at once on a local Ray with fewer.

    Ray waits for resources it lacks. On a cluster (``address``, or ``RAY_ADDRESS``) an
    autoscaler may add GPU nodes, so nothing is checked there; a Ray started on this machine
    never gains one, and Ray Train, Tune and Serve would wait for ever (Ray Train's Ctrl-C
    handler too). Call it once Ray runs.

    Args:
        needed: GPUs the work needs at once (0: it needs none).
        address: the cluster address the command was given, if any.
        fewer: the option that asks for fewer of them (``--workers``), for the message.
        option: the setting that asked for GPUs, for the message.

    Raises:
        ConfigError: naming both counts and what to do.
    """
    if not needed or cluster_address(address) is not None:
        return
    import ray

    available = ray.cluster_resources().get("GPU", 0.0)
    if needed <= available:
        return
    if not available:
        raise ConfigError(
            f"{option} asks for GPUs but this machine's Ray has none: run without it, or on a "
            "machine with an NVIDIA GPU"
        )
    raise ConfigError(
        f"{option} needs {needed:g} GPUs at once and this machine's Ray has {available:g}: "
        f"lower {fewer}"
    )


def _set_ray_data_console_level(level: int) -> None:
    """Ray Data logs through its own handlers (its logger does not propagate): a file in the
    session log directory that keeps everything, and a console handler that this sets."""
    import ray.data  # noqa: F401  (configures Ray Data's loggers)

    for handler in logging.getLogger("ray.data").handlers:
        if handler.get_name() == "console":
            handler.setLevel(level)
