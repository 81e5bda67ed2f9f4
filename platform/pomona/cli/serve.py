"""``pomona serve``: serve registry models over HTTP with Ray Serve, and manage what is served.

``pomona serve MODEL...`` runs in the foreground until Ctrl-C; ``promote``, ``traffic``,
``batch`` and ``status`` talk to the running application through the Serve controller (Ray's
token guards them, the HTTP port has no management endpoint); ``build`` writes the same Serve
config as a YAML file for ``serve deploy`` or a KubeRay RayService.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from pomona.cli.console import console
from pomona.cli.registry import NameArgument
from pomona.cli.session import session
from pomona.errors import ConfigError

if TYPE_CHECKING:
    from pomona.serving.config import AppArgs, BatchSettings, ServeOptions
    from pomona.serving.control import AppState

_START = "start"

logger = logging.getLogger(__name__)


class _ServeGroup(TyperGroup):
    """``pomona serve MODEL...`` means ``pomona serve start MODEL...`` unless MODEL is a command;
    ``pomona serve`` and ``pomona serve --help`` show ``start``'s help, which names the
    commands."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if not args or args[0] in ("--help", "-h"):
            args = [_START, "--help"]
        elif args[0] not in self.commands:
            args = [_START, *args]
        return super().parse_args(ctx, args)


class _ServeContext(typer.Context):
    """``start``'s context, named as users type it: usage lines and errors say ``pomona serve``,
    not the hidden ``pomona serve start``."""

    @property
    def command_path(self) -> str:
        return self.parent.command_path if self.parent is not None else super().command_path


class _StartCommand(TyperCommand):
    context_class = _ServeContext


serve_app = typer.Typer(
    cls=_ServeGroup,
    help="Serve registry models over HTTP (Ray Serve), and manage what a running server serves.",
)

ModelsArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="MODEL",
        help="Registry references: name (its aliases, traffic to production), name:N or "
        "name@alias (one pinned version).",
        show_default=False,
    ),
]
Host = Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 opens all interfaces.")]
Port = Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")]
_MAX_BATCH = typer.Option(min=1, help="Most images per forward pass.")
_BATCH_WAIT = typer.Option(min=0.0, help="Longest wait for a batch to fill, in seconds.")
MaxBatch = Annotated[int, _MAX_BATCH]
BatchWait = Annotated[float, _BATCH_WAIT]
MinReplicas = Annotated[int, typer.Option(min=0, help="Fewest replicas (autoscaling).")]
MaxReplicas = Annotated[
    int,
    typer.Option(
        min=1,
        help="Most replicas (autoscaling). One replica answers HTTP itself; more are reached "
        "through Serve's proxy.",
    ),
]
TorchThreads = Annotated[
    int, typer.Option(min=1, help="Torch threads per forward pass (the cores one replica may use).")
]
ConcurrentBatches = Annotated[
    int, typer.Option(min=1, help="Forward passes one model version runs at once.")
]
MaxQueued = Annotated[int, typer.Option(min=1, help="Queued requests before HTTP 503.")]
MaxBody = Annotated[int, typer.Option(min=1, help="Largest request body in bytes (HTTP 413).")]
UseGpu = Annotated[
    bool,
    typer.Option(
        "--use-gpu", help="One GPU per replica: the models run on CUDA.", show_default=False
    ),
]


@dataclass(frozen=True)
class PlanOptions:
    """The command-line options a Serve config is planned from (``start`` and ``build``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 16
    batch_wait_s: float = 0.005
    min_replicas: int = 1
    max_replicas: int = 1
    torch_threads: int = 2
    concurrent_batches: int = 2
    max_queued: int = 64
    max_body_bytes: int = 10 * 1024 * 1024
    use_gpu: bool = False


_OPTION_TYPES = {
    "host": Host,
    "port": Port,
    "max_batch_size": MaxBatch,
    "batch_wait_s": BatchWait,
    "min_replicas": MinReplicas,
    "max_replicas": MaxReplicas,
    "torch_threads": TorchThreads,
    "concurrent_batches": ConcurrentBatches,
    "max_queued": MaxQueued,
    "max_body_bytes": MaxBody,
    "use_gpu": UseGpu,
}


def _with_plan_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the :class:`PlanOptions` flags; it receives them as one ``options``.

    Typer builds a command's flags from its signature, so the wrapper's signature is the
    command's own parameters followed by one per :class:`PlanOptions` field.
    """
    own = [
        param
        for param in inspect.signature(command, eval_str=True).parameters.values()
        if param.name != "options"
    ]
    shared = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=_OPTION_TYPES[field.name],
        )
        for field in fields(PlanOptions)
    ]

    @functools.wraps(command)
    def with_options(**values: Any) -> None:
        options = PlanOptions(**{param.name: values.pop(param.name) for param in shared})
        command(options=options, **values)

    parameters = [*own, *shared]
    with_options.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    with_options.__annotations__ = {param.name: param.annotation for param in parameters}
    return with_options


def _settings(
    models: list[str], options: PlanOptions, registry: str
) -> tuple[AppArgs, ServeOptions]:
    """The application's args (serving from ``registry``) and the deployment's settings."""
    from pomona.config import validate
    from pomona.serving.config import AppArgs, ServeOptions

    batch = {"max_batch_size": options.max_batch_size, "batch_wait_timeout_s": options.batch_wait_s}
    args = validate(
        AppArgs,
        {
            "registry": registry,
            "references": models,
            "max_body_bytes": options.max_body_bytes,
            "torch_threads": options.torch_threads,
            "concurrent_batches": options.concurrent_batches,
            "batch": batch,
        },
        "serve arguments",
    )
    serve_options = validate(
        ServeOptions,
        {
            "host": options.host,
            "port": options.port,
            "min_replicas": options.min_replicas,
            "max_replicas": options.max_replicas,
            "max_queued_requests": options.max_queued,
            "use_gpu": options.use_gpu,
        },
        "serve options",
        {"min_replicas": "--min-replicas", "max_replicas": "--max-replicas"},
    )
    return args, serve_options


def plan(models: list[str], options: PlanOptions = PlanOptions()) -> dict[str, Any]:
    """The Serve config for ``models`` with the routing planned from the session's registry
    now, every version it serves checked against its registration: shared by ``start`` and the
    demo (``build`` leaves the routing to the registry it is deployed against)."""
    from pomona.serving.plan import plan_routing, serve_config, verify_versions

    registry = session.open_registry()
    args, serve_options = _settings(models, options, registry.uri)
    routing = plan_routing(args)
    verify_versions(routing, registry)
    return serve_config(args, routing, serve_options)


@serve_app.command(_START, hidden=True, cls=_StartCommand)
@_with_plan_options
def start_command(
    models: ModelsArgument,
    options: PlanOptions,
    metrics_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of Ray's Prometheus endpoint.")
    ] = 8080,
) -> None:
    """Serve MODEL... over HTTP until Ctrl-C.

    A running server is managed with pomona serve status, promote, traffic and batch; pomona
    serve build writes its Serve config for Ray's serve deploy and KubeRay (each command has
    --help).
    """
    # Ctrl-C and a TERM (e.g. from a supervisor) both shut down cleanly, also when a script
    # started the server in the background, whose SIGINT arrives ignored. Ctrl-C from the start
    # (while the application deploys, it is deleted again); a TERM once Ray runs, as ray.init
    # installs a TERM handler of its own that aborts the process.
    signal.signal(signal.SIGINT, _interrupt)
    config = plan(models, options)
    try:
        with serving(config, metrics_port) as urls:
            from pomona.serving import control

            signal.signal(signal.SIGTERM, _interrupt)

            _print_state(control.state())
            console.print(
                f"API:     {urls.api}/v1/models\nDocs:    {urls.api}/docs\n"
                f"Metrics: {urls.metrics}\n"
                f"Manage:  pomona --address {_ray_address()} serve "
                "status|promote|traffic|batch\n"
                "Ctrl-C stops serving.",
                markup=False,
                soft_wrap=True,
            )
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopped", markup=False)


@dataclass(frozen=True)
class Endpoints:
    """Where a running server answers.

    Attributes:
        api: base URL of the HTTP API.
        metrics: Ray's Prometheus endpoint (pomona's and Serve's metrics).
    """

    api: str
    metrics: str


@contextmanager
def serving(config: dict[str, Any], metrics_port: int | None = None) -> Iterator[Endpoints]:
    """Deploy ``config`` on this session's Ray; on exit shut Serve and Ray down.

    A local Ray started here gets :func:`~pomona.serving.config.serving_env`. For one
    replica, that replica serves HTTP itself on the config's port, Serve's proxy on a spare
    port; otherwise Serve's proxy answers on the config's port.

    Args:
        config: from :func:`plan`.
        metrics_port: port for the Prometheus endpoint of a local Ray this starts.
    """
    import ray

    from pomona.cluster.runtime import (
        check_local_gpus,
        cluster_address,
        ensure_ray,
        free_ports,
    )
    from pomona.serving.config import serving_env
    from pomona.serving.plan import gpus_to_start, has_one_replica

    # Ray started here goes when serving stops; a Ray this process already had (the demo's) or
    # a shared cluster stays, and on a shared cluster only our application is removed.
    started = not ray.is_initialized()
    local = cluster_address(session.address) is None
    http = config["http_options"]
    if started and local:
        # Checked before Ray starts: Serve would report a taken port as a failed deployment
        # with a traceback, a minute later.
        _check_free(http["host"], http["port"], "--port")
        if metrics_port == http["port"]:
            raise ConfigError(
                f"--metrics-port {metrics_port} is also the HTTP --port: give each its own"
            )
        if metrics_port is not None:
            _check_free("127.0.0.1", metrics_port, "--metrics-port")
    if started and local:
        one = has_one_replica(config)
        os.environ.update(serving_env(http["port"] if one else None))
        if one:
            # The replica answers on the port asked for; Serve's proxy gets a spare one.
            (spare,) = free_ports(1, besides={http["port"], metrics_port})
            config = {**config, "http_options": {**http, "port": spare}}
    from pomona.serving import control

    ensure_ray(session.address, log_to_driver=session.verbose, metrics_export_port=metrics_port)
    if not session.verbose:
        # Serve's logger does not propagate to "ray": quiet it like the rest of Ray.
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        check_local_gpus(gpus_to_start(config), session.address, "--min-replicas")
        try:
            control.deploy(config)
            host = "127.0.0.1" if http["host"] in ("0.0.0.0", "::") else http["host"]
            yield Endpoints(
                api=f"http://{host}:{http['port']}",
                metrics=f"http://127.0.0.1:{_metrics_port()}/metrics",
            )
        finally:
            # Replicas drain while the application is deleted. A Ray started here then takes
            # Serve's controller and proxy down with it: serve.shutdown() would make Ray print a
            # failed task line for the controller it kills, on an otherwise clean stop.
            if not control.delete():
                logger.warning(
                    "Ray's processes stopped before serving did (a TERM to the whole process "
                    "group reaches them too): requests in flight were not drained"
                )
            elif local and not started:
                control.shutdown()
    finally:
        if started:
            ray.shutdown()


def _check_free(host: str, port: int, option: str) -> None:
    """Refuse ``host:port`` when it cannot be listened on, as Serve's HTTP server binds it.

    Raises:
        ConfigError: naming the address, the reason and the option that chooses another.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As Serve's and Ray's HTTP servers bind: the connections of a server that just stopped
        # (TIME_WAIT) do not hold the port, a listening socket does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({error.strerror or error}): stop what uses "
                f"it or choose another {option}"
            ) from None


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _ray_address() -> str:
    import ray

    return ray.get_runtime_context().gcs_address


def _join(command: str) -> None:
    """Join the cluster a running ``pomona serve`` uses, for ``pomona serve COMMAND``; never
    start a new, empty one."""
    import ray

    from pomona.cluster.runtime import cluster_address

    if not ray.is_initialized() and cluster_address(session.address) is None:
        raise ConfigError(
            f"which server? run `pomona --address ADDRESS serve {command}` with the Ray "
            "address that `pomona serve` printed (or set RAY_ADDRESS)"
        )
    session.connect()


def _metrics_port() -> int:
    import ray

    here = ray.get_runtime_context().get_node_id()
    return next(int(n["MetricsExportPort"]) for n in ray.nodes() if n["NodeID"] == here)


#: The first line of every Serve config ``build`` writes begins so; it replaces only those.
_BUILT_BY = "# Written by `pomona serve build`"


@serve_app.command("build")
@_with_plan_options
def build_command(
    models: ModelsArgument,
    options: PlanOptions,
    out: Annotated[
        Path, typer.Option(help="YAML file to write (replaced if an earlier build wrote it).")
    ] = Path("serve/pomona.yaml"),
) -> None:
    """Write the Serve config for MODEL... (for Ray's serve run/deploy and KubeRay's RayService).

    The config names the references, not versions: the registry it is deployed against (its
    args.registry, from --registry) is read when Serve deploys it, so a bare name serves that
    registry's aliases as they are then (pin a version with name:N). The references are only
    checked for form here: the registry need not hold them, nor exist on this machine. Every
    model starts with --max-batch-size and --batch-wait-s (args.batch).
    """
    import yaml

    from pomona.serving.control import validate_config
    from pomona.serving.plan import serve_config
    from pomona.storage import atomic_write_text

    if out.is_file() and not out.read_text(errors="replace").startswith(_BUILT_BY):
        raise ConfigError(
            f"{out} exists and was not written by `pomona serve build`; choose another --out, "
            "or delete it first"
        )
    args, serve_options = _settings(models, options, session.open_registry().uri)
    config = serve_config(args, None, serve_options)
    validate_config(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"{_BUILT_BY}; deploy with `serve deploy` or a RayService.\n"
    atomic_write_text(out, header + yaml.safe_dump(config, sort_keys=False))
    console.print(f"wrote {out}", markup=False, soft_wrap=True)


@serve_app.command("promote")
def promote_command(
    name: NameArgument,
    version: Annotated[
        int,
        typer.Argument(metavar="VERSION", min=1, help="Version to promote.", show_default=False),
    ],
) -> None:
    """Point NAME's production alias in the registry at VERSION, and route the running server
    accordingly.

    The alias is the registry's: `predict NAME@production` and every server of NAME's aliases
    follow it. A server that pins NAME to a version (NAME:N, NAME@canary) is refused: moving
    the alias would not change what it serves. Runs against the server at
    `pomona --address ADDRESS`, the Ray address `pomona serve` printed.
    """
    from pomona.registry import ModelRef, Registry
    from pomona.serving import control
    from pomona.serving.plan import check_promotable

    _join("promote")
    current = control.state()
    current.routing.route(name)  # a model the server does not serve is refused, naming them
    check_promotable(current.args, name, version)
    registry = Registry(current.args.registry)
    # Before the alias moves: a version the replicas cannot load must not become production.
    registry.verify(ModelRef(name, version=version))
    previous = registry.set_alias(name, version, "production")
    routing = control.refresh_routing()
    console.print(
        f"{name}: production {previous or '-'} -> {version}; "
        f"split {_split(routing.models[name].split)}",
        markup=False,
        soft_wrap=True,
    )


@serve_app.command("traffic")
def traffic_command(
    name: NameArgument,
    weights: Annotated[
        list[str],
        typer.Argument(
            metavar="ALIAS=PERCENT",
            help="ALIAS=PERCENT pairs that add up to 100, e.g. production=90 canary=10.",
            show_default=False,
        ),
    ],
) -> None:
    """Split NAME's unpinned requests between its served aliases, in percentages that add up
    to 100.

    Runs against the server at `pomona --address ADDRESS`, the Ray address `pomona serve`
    printed.
    """
    from pomona.serving import control
    from pomona.serving.config import parse_split

    _join("traffic")
    routing = control.state().routing
    route = parse_split(weights, routing.route(name), name)
    control.apply_routing(routing.with_route(name, route))
    console.print(f"{name}: split {_split(route.split)}", markup=False, soft_wrap=True)


@serve_app.command("batch")
def batch_command(
    name: NameArgument,
    max_batch_size: Annotated[int | None, _MAX_BATCH] = None,
    batch_wait_s: Annotated[float | None, _BATCH_WAIT] = None,
) -> None:
    """Change how NAME's versions batch, on the running server, without a restart.

    Runs against the server at `pomona --address ADDRESS`, the Ray address `pomona serve`
    printed.
    """
    from pomona.config import validate
    from pomona.serving import control
    from pomona.serving.config import BatchSettings, ongoing_after_change

    if max_batch_size is None and batch_wait_s is None:
        raise ConfigError("nothing to change: give --max-batch-size and/or --batch-wait-s")
    _join("batch")
    current = control.state()
    changes = {"max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_s}
    batch = validate(
        BatchSettings,
        {
            **current.routing.route(name).batch.model_dump(),
            **{key: value for key, value in changes.items() if value is not None},
        },
        "batch settings",
    )
    routing = current.routing.with_batch(name, batch)
    # Serve applies both without a restart.
    ongoing = ongoing_after_change(
        current.max_ongoing_requests, current.routing, routing, current.args.concurrent_batches
    )
    control.apply_routing(routing, max_ongoing_requests=ongoing)
    message = f"{name}: batches of up to {batch.max_batch_size}, {_wait(batch)} wait"
    if ongoing != current.max_ongoing_requests:
        message += (
            f"; each replica now works on up to {ongoing} requests at once "
            f"(was {current.max_ongoing_requests})"
        )
    console.print(message, markup=False, soft_wrap=True)


@serve_app.command("status")
def status_command() -> None:
    """Show the served models, versions, aliases, traffic split, batching and replicas.

    Runs against the server at `pomona --address ADDRESS`, the Ray address `pomona serve`
    printed.
    """
    from pomona.serving import control

    _join("status")
    _print_state(control.state())


def _split(split: dict[str, int]) -> str:
    total = sum(split.values())
    return " ".join(f"{label}={weight * 100 / total:g}%" for label, weight in split.items())


def _wait(batch: BatchSettings) -> str:
    return f"{batch.batch_wait_timeout_s * 1000:g} ms"


def _print_state(state: AppState) -> None:
    table = Table("model", "version", "aliases", "traffic", "batch / wait")
    for name, route in sorted(state.routing.models.items()):
        total = sum(route.split.values())
        batching = f"{route.batch.max_batch_size} / {_wait(route.batch)}"
        for version in route.versions:
            labels = sorted(a for a, v in route.targets.items() if v == version)
            share = sum(route.split.get(a, 0) for a in labels) * 100 / total
            table.add_row(
                escape(name), str(version), escape(", ".join(labels)), f"{share:g}%", batching
            )
    console.print(table)
    replicas = ", ".join(
        f"{d.name} {d.replicas}/{d.target_replicas} {d.status.lower()}" for d in state.deployments
    )
    console.print(
        f"application {state.status.lower()}; replicas: {replicas}", markup=False, soft_wrap=True
    )


def register(app: typer.Typer) -> None:
    """Attach ``pomona serve`` to the root app."""
    app.add_typer(serve_app, name="serve")
