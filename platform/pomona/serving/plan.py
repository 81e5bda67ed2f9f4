"""From registry references to a Serve config: the one code path of ``pomona serve`` and ``build``.

``pomona serve`` deploys the dict :func:`serve_config` returns, with the routing it planned from
the registry; ``pomona serve build`` writes it without one, as YAML, which ``serve run``,
``serve deploy`` and a KubeRay RayService accept as they are: the application builder then plans
the routing from the registry it is deployed against, when Serve deploys it. No Ray here: the
config is plain data.
"""

from __future__ import annotations

import copy
from typing import Any

from pomona.errors import ConfigError
from pomona.registry import ModelRef, Registry, parse_ref
from pomona.serving.config import (
    APP_MODULE,
    APP_NAME,
    INGRESS_DEPLOYMENT,
    LATEST,
    MIN_ONGOING_REQUESTS,
    PINNED,
    AppArgs,
    BatchSettings,
    ModelRoute,
    Routing,
    ServeOptions,
    ongoing_requests,
)

#: The application builder Serve imports (``import_path`` of the config).
IMPORT_PATH = f"{APP_MODULE}:build_app"
PRODUCTION = "production"
#: GPUs a replica reserves with ``use_gpu``. A Serve config may give it a fraction instead
#: (``num_gpus: 0.5``: two replicas share a GPU); the replica runs on CUDA either way.
GPUS_PER_REPLICA = 1


def plan_route(reference: str | ModelRef, registry: Registry) -> ModelRoute:
    """The route a served reference starts with.

    ``name:N`` and ``name@alias`` pin one version. A bare ``name`` serves every version its
    aliases point to, plus its newest as ``latest``, and sends traffic to ``production`` if
    there is one, else to ``latest``.

    Raises:
        RegistryError: a malformed reference.
        ModelNotFoundError: the model, version or alias does not exist.
    """
    ref = parse_ref(reference) if isinstance(reference, str) else reference
    if ref.version is not None:
        version = registry.resolve(ref)
        return ModelRoute(targets={PINNED: version}, split={PINNED: 100})
    if ref.alias is not None:
        return ModelRoute(targets={ref.alias: registry.resolve(ref)}, split={ref.alias: 100})
    targets = {**registry.aliases(ref.name), LATEST: registry.resolve(ref)}
    default = PRODUCTION if PRODUCTION in targets else LATEST
    return ModelRoute(targets=targets, split={default: 100})


def check_promotable(args: AppArgs, name: str, version: int) -> None:
    """Refuse to promote ``version`` of served model ``name`` on a server that pins it to one
    version (``name:N``, or an alias other than ``production``): moving the registry's
    ``production`` alias would not change what that server answers.

    Raises:
        ConfigError: naming what is served and the command that moves the alias alone.
    """
    (served,) = (ref for ref in map(parse_ref, args.references) if ref.name == name)
    if served.version is not None or served.alias not in (None, PRODUCTION):
        raise ConfigError(
            f"this server serves {served} only, so moving {name}@{PRODUCTION} would not change "
            f"what it answers; serve {name} to follow its aliases, or move the alias alone with "
            f"`pomona registry alias {name} {version} {PRODUCTION}`"
        )


def plan_routing(
    args: AppArgs, previous: Routing | None = None, batch: BatchSettings | None = None
) -> Routing:
    """Routes for every served reference, from the registry as it is now.

    A split from ``previous`` is kept when every label it weights is still served, so a
    promote moves versions under a configured canary split without resetting it; batch
    settings from ``previous`` are kept, and ``batch`` (default: ``args.batch``) is used for
    models it does not have.
    """
    batch = batch or args.batch
    registry = Registry(args.registry)
    models = {}
    for reference in args.references:
        ref = parse_ref(reference)
        route = plan_route(ref, registry).model_copy(update={"batch": batch})
        old = previous.models.get(ref.name) if previous is not None else None
        if old is not None:
            route = route.model_copy(update={"batch": old.batch})
            if set(old.split) <= set(route.targets):
                route = route.model_copy(update={"split": old.split})
        models[ref.name] = route
    return Routing(models=models)


def verify_versions(routing: Routing, registry: Registry) -> None:
    """Check every version ``routing`` serves against its registration.

    Each replica checks again as it loads a version. This is for the command line: a modified
    or corrupted file is then reported at once, not after Serve has tried three times to start
    a replica that cannot load it (about 25 s).

    Raises:
        ModelNotFoundError: a version no longer exists.
        CheckpointError: a file is missing or its sha256 differs from the one recorded at
            registration.
    """
    for name, route in routing.models.items():
        for version in route.versions:
            registry.verify(ModelRef(name, version=version))


def serve_config(args: AppArgs, routing: Routing | None, options: ServeOptions) -> dict[str, Any]:
    """The Serve config (``ServeDeploySchema`` as a dict) that serves ``args``.

    One deployment, ``api``: each replica parses HTTP, decodes images and runs the batched
    forward passes of every served version itself, so a request crosses no actor boundary.
    Serve scales it between ``options.min_replicas`` and ``options.max_replicas`` and answers
    HTTP 503 with ``Retry-After`` past its queue limits.

    Args:
        args: the application's fixed arguments.
        routing: the deployment's user_config (routes and batch settings); None leaves it
            out, and :func:`pomona.serving.app.build_app` plans it from the registry when Serve
            deploys the config, every model batching with ``args.batch``.
        options: HTTP, scaling and queue settings.
    """
    api: dict[str, Any] = {
        "name": INGRESS_DEPLOYMENT,
        "autoscaling_config": {
            "min_replicas": options.min_replicas,
            "initial_replicas": max(options.min_replicas, 1),
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_ongoing_requests,
        },
        "max_ongoing_requests": options.max_ongoing_requests or initial_ongoing(args, routing),
        "max_queued_requests": options.max_queued_requests,
        "backpressure_config": {"status_code": 503, "retry_after_s": args.retry_after_s},
    }
    if routing is not None:
        api["user_config"] = routing.model_dump(mode="json")
    api["ray_actor_options"] = {"num_cpus": options.replica_cpus}
    if options.use_gpu:
        api["ray_actor_options"]["num_gpus"] = GPUS_PER_REPLICA
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": options.host, "port": options.port},
        # Serve's access log writes and flushes a line per request in the proxy and in every
        # replica it passes; pomona_requests_total and the latency histograms count the same.
        "logging_config": {"enable_access_log": False},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": args.model_dump(mode="json"),
                "deployments": [api],
            }
        ],
    }


def initial_ongoing(args: AppArgs, routing: Routing | None = None) -> int:
    """The replicas' ``max_ongoing_requests`` unless one is given: :func:`ongoing_requests` of
    ``routing``, or, for a routing planned when Serve deploys (None), of the one it will be, in
    which every model batches with ``args.batch``."""
    if routing is None:
        return max(MIN_ONGOING_REQUESTS, args.concurrent_batches * args.batch.max_batch_size)
    return ongoing_requests(routing, args.concurrent_batches)


def _ingress(config: dict[str, Any]) -> dict[str, Any]:
    """The ``api`` deployment of ``config`` (from :func:`serve_config`)."""
    (app,) = config["applications"]
    (api,) = (d for d in app["deployments"] if d["name"] == INGRESS_DEPLOYMENT)
    return api


def has_one_replica(config: dict[str, Any]) -> bool:
    """Whether ``config`` (from :func:`serve_config`) runs exactly one ``api`` replica.

    Only then can that replica serve HTTP itself on the configured port (Serve's direct
    ingress); more replicas need Serve's proxy to spread requests between them.
    """
    scaling = _ingress(config)["autoscaling_config"]
    return bool(scaling["min_replicas"] == scaling["max_replicas"] == 1)


def gpus_to_start(config: dict[str, Any]) -> float:
    """GPUs the ``api`` replicas of ``config`` (from :func:`serve_config`) reserve as it starts
    (0 when they run on CPUs)."""
    api = _ingress(config)
    per_replica = float(api.get("ray_actor_options", {}).get("num_gpus", 0))
    return per_replica * api["autoscaling_config"]["initial_replicas"]


def reserving(config: dict[str, Any], resource: str, amount: float) -> dict[str, Any]:
    """A copy of a Serve config in which every pomona application's ``api`` replicas reserve
    ``amount`` of ``resource`` (a ``ray_actor_options`` key: ``num_cpus``, ``num_gpus``), unless
    they already reserve some; other applications (a config written by hand may hold any) are
    left as they are."""
    config = copy.deepcopy(config)
    for app in config.get("applications", []):
        if app.get("import_path") != IMPORT_PATH:
            continue
        for deployment in app.get("deployments", []):
            if deployment.get("name") == INGRESS_DEPLOYMENT:
                options = deployment["ray_actor_options"] = (
                    deployment.get("ray_actor_options") or {}
                )
                options[resource] = options.get(resource) or amount
    return config


def on_gpus(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`reserving` :data:`GPUS_PER_REPLICA` GPUs per pomona replica."""
    return reserving(config, "num_gpus", GPUS_PER_REPLICA)
