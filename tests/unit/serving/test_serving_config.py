"""Routing, traffic splits, application arguments and the Serve config, without Ray."""

from __future__ import annotations

import inspect
import random
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema
from support.fake_models import make_model_dir

from pomona.errors import ConfigError, ModelNotFoundError
from pomona.registry import Registry
from pomona.serving.config import (
    MIN_ONGOING_REQUESTS,
    AppArgs,
    BatchSettings,
    ModelRoute,
    Routing,
    ServeOptions,
    ongoing_after_change,
    ongoing_requests,
    parse_split,
    requests_to_fill,
    serving_env,
)
from pomona.serving.plan import (
    IMPORT_PATH,
    check_promotable,
    gpus_to_start,
    has_one_replica,
    initial_ongoing,
    on_gpus,
    plan_route,
    plan_routing,
    serve_config,
)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """``cats`` with versions 1-3, production -> 1, canary -> 2; ``dogs`` with one version."""
    registry = Registry(tmp_path / "registry")
    for seed in range(3):
        registry.register(make_model_dir(tmp_path / f"cats-{seed}", seed), "cats")
    registry.register(make_model_dir(tmp_path / "dogs", 9), "dogs")
    registry.set_alias("cats", 1, "production")
    registry.set_alias("cats", 2, "canary")
    return registry


ROUTE = ModelRoute(targets={"production": 1, "canary": 2, "latest": 3}, split={"production": 100})


def test_a_name_serves_its_aliases_and_latest_with_traffic_to_production(
    registry: Registry,
) -> None:
    route = plan_route("cats", registry)
    assert route.targets == {"production": 1, "canary": 2, "latest": 3}
    assert route.split == {"production": 100}
    assert plan_route("dogs", registry).split == {"latest": 100}
    # One version takes every request, as 100 (the README's and /v1/models' examples).
    assert plan_route("cats:3", registry).split == {"pinned": 100}
    assert plan_route("cats:3", registry).targets == {"pinned": 3}
    assert plan_route("cats@canary", registry).targets == {"canary": 2}
    assert plan_route("cats@canary", registry).split == {"canary": 100}
    with pytest.raises(ModelNotFoundError, match="no alias 'beta'"):
        plan_route("cats@beta", registry)


def test_a_promote_keeps_a_split_whose_aliases_still_exist_and_the_batches(
    registry: Registry,
) -> None:
    args = AppArgs(registry=registry.uri, references=["cats", "dogs"])
    first = plan_routing(args)
    batch = BatchSettings(max_batch_size=4)
    shifted = first.models["cats"].model_copy(
        update={"split": {"production": 90, "canary": 10}, "batch": batch}
    )
    registry.set_alias("cats", 3, "production")
    again = plan_routing(args, Routing(models={**first.models, "cats": shifted}))
    assert again.models["cats"].targets["production"] == 3
    assert again.models["cats"].split == {"production": 90, "canary": 10}
    assert again.models["cats"].batch == batch
    moved = first.with_route("cats", shifted)
    assert moved.models == {**first.models, "cats": shifted}
    assert first.models["cats"] != shifted  # a copy: the original is unchanged
    assert again.models["dogs"] == first.models["dogs"]


def test_resolve_pins_versions_and_aliases_and_names_what_is_served() -> None:
    routing = Routing(models={"cats": ROUTE})
    rng = random.Random(0)
    assert routing.resolve("cats", None, None, rng) == 1
    assert routing.resolve("cats", 3, None, rng) == 3
    assert routing.resolve("cats", None, "canary", rng) == 2
    with pytest.raises(ModelNotFoundError, match="version 7 of 'cats' is not served; served: 1, 2"):
        routing.resolve("cats", 7, None, rng)
    with pytest.raises(ModelNotFoundError, match="alias 'beta' of 'cats' is not served"):
        routing.resolve("cats", None, "beta", rng)
    with pytest.raises(ModelNotFoundError, match="model 'dogs' is not served; served: cats"):
        routing.resolve("dogs", None, None, rng)


def test_the_split_draws_versions_by_weight() -> None:
    route = parse_split(["production=75", "canary=25", "latest=0"], ROUTE, "cats")
    rng = random.Random(1)
    drawn = Counter(route.choose(rng) for _ in range(4000))
    assert set(drawn) == {1, 2}
    assert drawn[2] / 4000 == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        ([], "at least one ALIAS=PERCENT"),
        (["production"], "invalid traffic assignment 'production'"),
        (["production=-1"], "a whole percentage from 0 to 100"),
        (["production=1.5"], "invalid traffic assignment"),
        (["canary=110"], "invalid traffic assignment 'canary=110'"),
        (["production=1", "production=2"], "'production' is given twice"),
        (["beta=10"], "cats does not serve beta; it serves canary \\(version 2\\)"),
        (["production=0", "canary=0"], "add up to 100, got production 0 \\+ canary 0 = 0"),
        (["production=90", "canary=20"], "add up to 100, got production 90 \\+ canary 20 = 110"),
        (["production=50"], "add up to 100, got production 50 = 50"),
    ],
)
def test_bad_splits_are_refused(assignments: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_split(assignments, ROUTE, "cats")


def test_routes_and_arguments_validate_themselves() -> None:
    with pytest.raises(ValidationError, match="not served"):
        ModelRoute(targets={"production": 1}, split={"canary": 100})
    with pytest.raises(ValidationError, match="must add up to 100"):
        ModelRoute(targets={"production": 1, "canary": 2}, split={"production": 9, "canary": 1})
    with pytest.raises(ValidationError, match="served once"):
        AppArgs(registry="r", references=["cats", "cats:2"])
    with pytest.raises(ValidationError):
        AppArgs(registry="r", references=["Cats!"])
    with pytest.raises(ValidationError, match="exceeds max_replicas"):
        ServeOptions(min_replicas=3, max_replicas=2)
    with pytest.raises(ValidationError):
        ServeOptions(port=70000)


def test_the_serve_config_puts_changeable_settings_in_user_config(registry: Registry) -> None:
    args = AppArgs(registry=registry.uri, references=["cats", "dogs:1"])
    batch = BatchSettings(max_batch_size=8, batch_wait_timeout_s=0.01)
    routing = plan_routing(args, batch=batch)
    options = ServeOptions(port=8100, max_queued_requests=5, min_replicas=0, max_replicas=3)
    config = serve_config(args, routing, options)
    (app,) = config["applications"]
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8100}
    assert app["import_path"] == IMPORT_PATH
    assert AppArgs.model_validate(app["args"]) == args
    (api,) = app["deployments"]
    assert Routing.model_validate(api["user_config"]) == routing
    assert {name: route.batch for name, route in routing.models.items()} == {
        "cats": batch,
        "dogs": batch,
    }
    assert api["max_queued_requests"] == 5
    assert api["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}
    assert api["autoscaling_config"]["min_replicas"] == 0
    assert api["autoscaling_config"]["max_replicas"] == 3
    assert not has_one_replica(config)
    assert has_one_replica(serve_config(args, routing, ServeOptions()))


def test_app_args_carry_the_initial_batch_settings(registry: Registry) -> None:
    args = AppArgs(registry=registry.uri, references=["cats"])
    assert args.batch == BatchSettings()
    batch = {"max_batch_size": 4, "batch_wait_timeout_s": 0.02}
    args = AppArgs.model_validate({**args.model_dump(mode="json"), "batch": batch})
    assert args.batch == BatchSettings(**batch)
    # As Serve's config carries them: plain JSON, read back the same.
    assert AppArgs.model_validate(args.model_dump(mode="json")) == args
    # The routing planned without a previous one (as the application builder does) uses them.
    assert plan_routing(args).models["cats"].batch == args.batch
    for bad in ({"max_batch_size": 0}, {"batch_wait_timeout_s": 2.0}, {"max_batch": 4}):
        with pytest.raises(ValidationError, match="batch"):
            AppArgs(registry=registry.uri, references=["cats"], batch=bad)


def test_a_config_without_routing_leaves_it_to_the_application_builder(tmp_path: Path) -> None:
    # No registry is read: the references are resolved when Serve deploys the config.
    args = AppArgs(
        registry=str(tmp_path / "nowhere"),
        references=["cats", "dogs:1"],
        concurrent_batches=3,
        batch=BatchSettings(max_batch_size=20),
    )
    config = serve_config(args, None, ServeOptions())
    ServeDeploySchema.model_validate(config)
    assert not (tmp_path / "nowhere").exists()
    (app,) = config["applications"]
    assert AppArgs.model_validate(app["args"]) == args
    (api,) = app["deployments"]
    assert "user_config" not in api
    # Enough for three batches of 20 at once, from args.batch: what the planned routing needs.
    assert api["max_ongoing_requests"] == initial_ongoing(args) == 60
    assert api["ray_actor_options"] == {"num_cpus": 0.0}
    small = args.model_copy(update={"batch": BatchSettings(max_batch_size=4)})
    assert initial_ongoing(small) == MIN_ONGOING_REQUESTS
    (limited,) = serve_config(args, None, ServeOptions(max_ongoing_requests=5))["applications"]
    assert limited["deployments"][0]["max_ongoing_requests"] == 5  # given: kept


def test_the_limit_of_a_built_config_is_the_one_of_the_routing_planned_at_deploy(
    registry: Registry,
) -> None:
    # `pomona serve batch` moves a limit that is ongoing_requests of the routing served.
    args = AppArgs(
        registry=registry.uri, references=["cats", "dogs"], batch=BatchSettings(max_batch_size=24)
    )
    planned = plan_routing(args)
    assert initial_ongoing(args) == initial_ongoing(args, planned) == ongoing_requests(planned, 2)
    assert initial_ongoing(args) == 48


def test_use_gpu_gives_each_replica_a_gpu(registry: Registry) -> None:
    args = AppArgs(registry=registry.uri, references=["cats"])
    routing = plan_routing(args)

    def actor_options(config: dict) -> dict:
        return config["applications"][0]["deployments"][0]["ray_actor_options"]

    on_cpus = serve_config(args, routing, ServeOptions())
    assert actor_options(on_cpus) == {"num_cpus": 0.0}
    assert gpus_to_start(on_cpus) == 0
    three = serve_config(args, routing, ServeOptions(use_gpu=True, min_replicas=3, max_replicas=4))
    assert actor_options(three) == {"num_cpus": 0.0, "num_gpus": 1}
    assert gpus_to_start(three) == 3
    # The GPU overlay's rewrite: a config on CPUs gets a GPU per replica, one that already asks
    # for GPUs (a fraction, by hand) is left as it is.
    assert on_gpus(on_cpus) == serve_config(args, routing, ServeOptions(use_gpu=True))
    assert actor_options(on_cpus) == {"num_cpus": 0.0}
    actor_options(three)["num_gpus"] = 0.5
    assert on_gpus(three) == three
    assert gpus_to_start(three) == 1.5
    other = {"name": "other", "import_path": "elsewhere:app", "deployments": [{"name": "api"}]}
    mixed = {**on_cpus, "applications": [*on_cpus["applications"], other]}
    assert on_gpus(mixed)["applications"] == [*on_gpus(on_cpus)["applications"], other]


def test_replicas_take_enough_requests_for_every_batch_to_fill(registry: Registry) -> None:
    args = AppArgs(registry=registry.uri, references=["cats", "dogs:1"], concurrent_batches=3)
    small = plan_routing(args, batch=BatchSettings(max_batch_size=8))
    assert requests_to_fill(small, 3) == 24
    large = small.with_batch("dogs", BatchSettings(max_batch_size=20))
    # Three batches of 20 at once for dogs: 60 requests in the replica.
    assert requests_to_fill(large, 3) == 60

    def ongoing(routing: Routing, options: ServeOptions) -> int:
        (app,) = serve_config(args, routing, options)["applications"]
        return app["deployments"][0]["max_ongoing_requests"]

    assert ongoing(small, ServeOptions()) == MIN_ONGOING_REQUESTS == 32
    assert ongoing(large, ServeOptions()) == 60
    # A limit given explicitly is kept, even one the batches cannot fill.
    assert ongoing(large, ServeOptions(max_ongoing_requests=4)) == 4


def test_the_replicas_limit_follows_the_batches_unless_set_by_hand(registry: Registry) -> None:
    args = AppArgs(registry=registry.uri, references=["cats", "dogs:1"])  # 2 batches at once
    small = plan_routing(args)  # batches of 16: 32 requests
    large = small.with_batch("dogs", BatchSettings(max_batch_size=40))  # 80 requests
    tiny = small.with_batch("dogs", BatchSettings(max_batch_size=4))
    tiny = tiny.with_batch("cats", BatchSettings(max_batch_size=4))
    assert ongoing_requests(small, 2) == 32
    assert ongoing_requests(large, 2) == 80
    # At the default, it goes up with a larger batch and back down with a smaller one, never
    # under the floor.
    assert ongoing_after_change(32, small, large, 2) == 80
    assert ongoing_after_change(80, large, small, 2) == 32
    assert ongoing_after_change(32, small, tiny, 2) == MIN_ONGOING_REQUESTS
    # Set by hand: kept when the batches can fill under it, whatever they need...
    assert ongoing_after_change(100, large, small, 2) == 100
    assert ongoing_after_change(40, large, tiny, 2) == 40
    # ...and raised where they could not.
    assert ongoing_after_change(4, small, large, 2) == 80
    assert ongoing_after_change(40, small, large, 2) == 80


def test_serving_env_sets_only_settings_ray_reads() -> None:
    import ray._raylet
    from ray._private import ray_constants  # the modules' source only: no Ray starts
    from ray.serve._private import constants

    source = inspect.getsource(constants)
    # The settings of Ray's core (RayConfig) are named in its compiled library.
    core = Path(ray._raylet.__file__).read_bytes()
    for port in (None, 8123):
        env = serving_env(port)
        ray_settings = [name for name in env if name.startswith("RAY_")]
        unknown = [
            name
            for name in ray_settings
            if f'"{name}"' not in source
            and name != ray_constants.RAY_WORKER_NICENESS
            and f"\0{name}\0".encode() not in core
        ]
        assert unknown == [], f"Ray no longer reads {unknown}"
        assert set(env) - set(ray_settings) == {"OMP_WAIT_POLICY"}
        # Workers as important as Ray's own processes, whatever serves HTTP.
        assert env[ray_constants.RAY_WORKER_NICENESS] == "0"
        # Workers start with the application imported: Serve's import path names its module.
        assert IMPORT_PATH.startswith(f"{env['RAY_preload_python_modules']}:")
    assert "RAY_SERVE_ENABLE_DIRECT_INGRESS" not in serving_env(None)
    env = serving_env(8123)
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    # Ray's port range is half-open: exactly the asked port.
    low = int(env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])
    high = int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"])
    assert list(range(low, high)) == [8123]


@pytest.mark.parametrize("served", ["cats", "cats@production"])
def test_a_server_of_the_production_alias_can_promote(served: str) -> None:
    check_promotable(AppArgs(registry="r", references=["dogs:1", served]), "cats", 3)


@pytest.mark.parametrize("served", ["cats:2", "cats@canary"])
def test_a_server_pinned_to_one_version_refuses_a_promote(served: str) -> None:
    args = AppArgs(registry="r", references=[served])
    with pytest.raises(ConfigError, match=f"this server serves {served} only") as refused:
        check_promotable(args, "cats", 3)
    assert str(refused.value).endswith("`pomona registry alias cats 3 production`")
