"""What a pomona Serve application is configured with: plain pydantic, no Ray.

Three layers, split by how they change:

* :class:`AppArgs` are the application's ``args`` in the Serve config: fixed for the life of a
  deployment (which registry, which models, request limits). Changing them restarts replicas.
* :class:`Routing` is the ``api`` deployment's ``user_config``: every served model's versions,
  traffic split and batch settings. Serve applies a change to it with ``reconfigure``, without
  a restart, so ``pomona serve promote``, ``traffic`` and batch changes rewrite only this.
* :class:`ServeOptions` are the knobs ``pomona serve`` / ``pomona serve build`` take on the
  command line; they become the two above plus the deployment's scaling and queue settings.
"""

from __future__ import annotations

import random
import re
from typing import Annotated

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, model_validator

from pomona.config import StrictModel
from pomona.data.images import DEFAULT_MAX_PIXELS
from pomona.errors import ConfigError, ModelNotFoundError, RegistryError
from pomona.registry.names import parse_ref

APP_NAME = "pomona"
#: The one deployment: HTTP API and the served model versions, in each replica.
INGRESS_DEPLOYMENT = "api"
#: The module of the application builder Serve imports (``import_path``).
APP_MODULE = "pomona.serving.app"
#: Largest ``top_k`` a request may ask for; more is almost surely a mistake.
MAX_TOP_K = 1000
#: Route label used when a model is served without aliases (its newest version).
LATEST = "latest"
#: Route label used when a model is served as ``name:N``.
PINNED = "pinned"

Port = Annotated[int, Field(ge=1, le=65535)]
_WEIGHT = re.compile(r"^([a-z0-9][a-z0-9._-]{0,63})=(\d{1,3})$")


def serving_env(direct_ingress_port: int | None = None) -> dict[str, str]:
    """Environment for the Ray processes that serve: the local Ray ``pomona serve`` starts and
    the pods of the RayService ``pomona k8s render`` writes. With ``direct_ingress_port``, for
    one replica that serves HTTP on that port itself (a local Ray only).

    * Ray's workers (the replicas among them) run at niceness 0, as Ray's own processes do,
      instead of Ray's default 15. At 15 a replica yields its core to any daemon that wakes
      up: every 10 s the dashboard agent re-records each histogram observation it was sent, a
      few hundred milliseconds of CPU at a thousand requests a second, and the requests
      waiting behind it set the p99. Ray's job manager does the same for job drivers.
    * Serve's direct ingress (Ray 2.60, the HTTP half of ``RAY_SERVE_THROUGHPUT_OPTIMIZED``),
      with ``direct_ingress_port``: requests skip the proxy actor, which on a small machine
      costs more than the model. The proxy still runs (on the config's port); the replica
      answers on ``direct_ingress_port``, which is free again at once when it stops (no drain
      or quarantine for a load balancer: there is none).
    * The application's code runs on the replica's own event loop instead of a second one in
      another thread, so a request is not handed between threads (and GIL holders) on its way.
    * OpenMP threads sleep as soon as a forward pass ends instead of spinning for the next one:
      on a few shared cores a spinning thread takes the CPU the event loop needs to read the
      next requests. Small models gain throughput and lose most of their latency spikes; large
      ones lose a few percent of throughput (``benchmarks/RESULTS.md``, Serving).
    * Every Ray worker imports the application's module (torch, Serve, FastAPI) as it starts,
      among them the ones Ray starts ahead of need: a replica that finds one starts in about a
      second instead of spending 4-6 s on imports, at about 280 MB more in each of Serve's
      controller and proxy (``benchmarks/RESULTS.md``, Serving).

    Every Ray process reads these when it starts, so they must be in the environment before
    Ray is.
    """
    env = {
        "RAY_worker_niceness": "0",
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        "OMP_WAIT_POLICY": "PASSIVE",
        "RAY_preload_python_modules": APP_MODULE,
    }
    if direct_ingress_port is not None:
        env |= {
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(direct_ingress_port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(direct_ingress_port + 1),  # exclusive
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
            "RAY_SERVE_PORT_QUARANTINE_S": "0",
        }
    return env


class BatchSettings(StrictModel):
    """``@serve.batch`` settings of one model's versions.

    Attributes:
        max_batch_size: most images per forward pass.
        batch_wait_timeout_s: longest wait for a batch to fill after its first image arrives.
    """

    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 16
    batch_wait_timeout_s: Annotated[float, Field(ge=0.0, le=1.0)] = 0.005


class ModelRoute(StrictModel):
    """How requests for one model name reach its versions.

    Attributes:
        targets: route label (an alias, :data:`LATEST` or :data:`PINNED`) -> version number.
        split: route label -> percentage of the requests that name no version or alias (they
            add up to 100); labels with 0, or none, are still reachable with ``?alias=``.
        batch: how each of its versions batches forward passes.
    """

    targets: dict[str, PositiveInt] = Field(min_length=1)
    split: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(min_length=1)
    batch: BatchSettings = BatchSettings()

    @model_validator(mode="after")
    def _split_names_targets(self) -> ModelRoute:
        unknown = sorted(set(self.split) - set(self.targets))
        if unknown:
            raise ValueError(
                f"traffic split names {unknown}, which are not served; served: "
                f"{sorted(self.targets)}"
            )
        _check_percentages(self.split)
        return self

    @property
    def versions(self) -> list[int]:
        """The distinct versions served, ascending."""
        return sorted(set(self.targets.values()))

    def choose(self, rng: random.Random) -> int:
        """A version drawn by the traffic split."""
        labels = [label for label, weight in self.split.items() if weight]
        weights = [self.split[label] for label in labels]
        return self.targets[rng.choices(labels, weights)[0]]


class Routing(StrictModel):
    """The ``api`` deployment's ``user_config``: every served model's route."""

    models: dict[str, ModelRoute] = Field(min_length=1)

    def route(self, name: str) -> ModelRoute:
        """The route of model ``name``.

        Raises:
            ModelNotFoundError: the model is not served; the message lists those that are.
        """
        try:
            return self.models[name]
        except KeyError:
            raise ModelNotFoundError(
                f"model {name!r} is not served; served: {', '.join(sorted(self.models))}"
            ) from None

    def with_route(self, name: str, route: ModelRoute) -> Routing:
        """A copy in which model ``name`` has ``route``."""
        return self.model_copy(update={"models": {**self.models, name: route}})

    def with_batch(self, name: str, batch: BatchSettings) -> Routing:
        """A copy in which model ``name``'s versions batch with ``batch``.

        Raises:
            ModelNotFoundError: the model is not served.
        """
        return self.with_route(name, self.route(name).model_copy(update={"batch": batch}))

    def resolve(self, name: str, version: int | None, alias: str | None, rng: random.Random) -> int:
        """The version that answers a request for ``name`` (optionally pinned).

        Raises:
            ModelNotFoundError: unknown model, or a version or alias that is not served.
        """
        route = self.route(name)
        if version is not None:
            if version not in route.versions:
                raise ModelNotFoundError(
                    f"version {version} of {name!r} is not served; served: "
                    f"{', '.join(map(str, route.versions))}"
                )
            return version
        if alias is not None:
            if alias not in route.targets:
                raise ModelNotFoundError(
                    f"alias {alias!r} of {name!r} is not served; served: "
                    f"{', '.join(sorted(route.targets))}"
                )
            return route.targets[alias]
        return route.choose(rng)


#: Requests a replica works on at once unless its batches need more.
MIN_ONGOING_REQUESTS = 32


def requests_to_fill(routing: Routing, concurrent_batches: int) -> int:
    """Requests a replica serving ``routing`` must work on at once for every model's
    ``concurrent_batches`` batches to fill at its ``max_batch_size``: Serve's
    ``max_ongoing_requests`` below this leaves each batch short (and Serve warns)."""
    return concurrent_batches * max(route.batch.max_batch_size for route in routing.models.values())


def ongoing_requests(routing: Routing, concurrent_batches: int) -> int:
    """A replica's ``max_ongoing_requests`` unless one is given: :data:`MIN_ONGOING_REQUESTS`,
    or :func:`requests_to_fill` when that is more."""
    return max(MIN_ONGOING_REQUESTS, requests_to_fill(routing, concurrent_batches))


def ongoing_after_change(current: int, old: Routing, new: Routing, concurrent_batches: int) -> int:
    """The replicas' ``max_ongoing_requests`` once their routing goes from ``old`` to ``new``
    (new batch settings).

    A limit at :func:`ongoing_requests` of ``old`` follows the batches, down as well as up. Any
    other was set by hand and is kept, raised only where the new batches could never fill under
    it (:func:`requests_to_fill`).
    """
    if current == ongoing_requests(old, concurrent_batches):
        return ongoing_requests(new, concurrent_batches)
    return max(current, requests_to_fill(new, concurrent_batches))


class AppArgs(StrictModel):
    """The application's ``args``: fixed while it runs.

    Attributes:
        registry: registry root or URI the replicas load versions from.
        references: what was asked to be served (``name``, ``name:N``, ``name@alias``), one
            per model name.
        max_body_bytes: largest request body accepted (HTTP 413 beyond).
        max_pixels: largest decoded image, in pixels (a decompression bomb is refused).
        torch_threads: intra-op threads of each forward pass (match the cores a replica can
            use).
        concurrent_batches: forward passes one version runs at once (Serve's
            ``max_concurrent_batches``). With two, one batch computes while the other's thread
            is between torch ops (running Python, waiting for the GIL) or being handed its
            images: on 2 cores resnet18 at 224x224 served 1.1-1.2x the requests per second of
            one at a time. A lone request still gets every thread, but at half load two small
            batches share the cores and resnet18's median rose by a third to a half; 1 gives the
            lowest latency (``benchmarks/RESULTS.md``, Serving).
        retry_after_s: the ``Retry-After`` of an HTTP 503 for a full queue.
        batch: initial batch settings of every model, used where the Serve config gives no
            ``user_config``: the application builder then plans the routing from the registry
            when Serve deploys it (:func:`pomona.serving.app.build_app`).
    """

    registry: str
    references: list[str] = Field(min_length=1)
    max_body_bytes: PositiveInt = 10 * 1024 * 1024
    max_pixels: PositiveInt = DEFAULT_MAX_PIXELS
    torch_threads: PositiveInt = 2
    concurrent_batches: PositiveInt = 2
    retry_after_s: NonNegativeFloat = 1.0
    batch: BatchSettings = BatchSettings()

    @model_validator(mode="after")
    def _one_reference_per_name(self) -> AppArgs:
        try:
            names = self.names
        except RegistryError as error:
            raise ValueError(str(error)) from None
        if len(set(names)) != len(names):
            raise ValueError(f"each model may be served once, got {self.references}")
        return self

    @property
    def names(self) -> list[str]:
        """The model names served, in the order given."""
        return [parse_ref(reference).name for reference in self.references]


class ServeOptions(StrictModel):
    """Command-line knobs of ``pomona serve`` and ``pomona serve build``.

    Attributes:
        host: interface the HTTP server binds (127.0.0.1 unless asked otherwise).
        port: HTTP port.
        min_replicas: autoscaling floor.
        max_replicas: autoscaling ceiling.
        target_ongoing_requests: autoscaling target per replica.
        max_ongoing_requests: requests a replica works on at once; by default
            :func:`ongoing_requests`, enough for the batches to fill.
        max_queued_requests: requests waiting (per proxy, or in a replica that serves HTTP
            itself) before HTTP 503.
        replica_cpus: CPUs reserved per replica (0 lets replicas share the cores with Serve's
            own actors on a small machine).
        use_gpu: each replica reserves a GPU and runs its models on CUDA.
    """

    host: str = "127.0.0.1"
    port: Port = 8000
    min_replicas: NonNegativeInt = 1
    max_replicas: PositiveInt = 1
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 8.0
    max_ongoing_requests: PositiveInt | None = None
    max_queued_requests: PositiveInt = 64
    replica_cpus: NonNegativeFloat = 0.0
    use_gpu: bool = False

    @model_validator(mode="after")
    def _replicas(self) -> ServeOptions:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} exceeds max_replicas {self.max_replicas}"
            )
        return self


def _check_percentages(split: dict[str, int]) -> None:
    """Refuse a traffic split whose percentages do not add up to 100: a typo (``canary=110``,
    a forgotten ``production=90``) would otherwise send all traffic somewhere unintended."""
    total = sum(split.values())
    if total != 100:
        given = " + ".join(f"{label} {weight}" for label, weight in split.items())
        raise ValueError(f"traffic split percentages must add up to 100, got {given} = {total}")


def parse_split(assignments: list[str], route: ModelRoute, name: str) -> ModelRoute:
    """Apply ``alias=percent`` assignments to ``route``: the new split holds exactly these.

    Args:
        assignments: e.g. ``["production=90", "canary=10"]``.
        route: the model's current route.
        name: the model, for messages.

    Raises:
        ConfigError: a malformed assignment, a repeated or unserved label, or percentages that
            do not add up to 100.
    """
    if not assignments:
        raise ConfigError("give at least one ALIAS=PERCENT, e.g. production=90 canary=10")
    split: dict[str, int] = {}
    for item in assignments:
        match = _WEIGHT.match(item)
        if match is None or int(match.group(2)) > 100:
            raise ConfigError(
                f"invalid traffic assignment {item!r}: expected ALIAS=PERCENT with a whole "
                "percentage from 0 to 100, e.g. canary=10"
            )
        label, weight = match.group(1), int(match.group(2))
        if label in split:
            raise ConfigError(f"{label!r} is given twice in the traffic split")
        split[label] = weight
    unknown = sorted(set(split) - set(route.targets))
    if unknown:
        raise ConfigError(
            f"{name} does not serve {', '.join(unknown)}; it serves "
            f"{', '.join(f'{a} (version {v})' for a, v in sorted(route.targets.items()))}"
        )
    try:
        _check_percentages(split)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return route.model_copy(update={"split": split})
