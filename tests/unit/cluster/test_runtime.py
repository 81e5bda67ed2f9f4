"""pomona's Ray defaults apply to the embedded local Ray; joining a cluster on loopback gets only
what reaching it needs; joining any other cluster, none."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from pomona.cluster.runtime import (
    LOCAL_RAY_ENV,
    LOOPBACK_ENV,
    check_local_gpus,
    check_reachable,
    ensure_ray,
    free_ports,
    split_address,
    use_local_ray_defaults,
)
from pomona.errors import ClusterError, ConfigError


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RAY_ADDRESS and none of the defaults set (tests/conftest.py sets them all)."""
    for key in (*LOCAL_RAY_ENV, "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)


def test_a_local_ray_gets_every_default(clean_env: None) -> None:
    use_local_ray_defaults(None)

    assert {key: os.environ.get(key) for key in LOCAL_RAY_ENV} == LOCAL_RAY_ENV
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"


@pytest.mark.parametrize("how", ["argument", "RAY_ADDRESS"])
def test_joining_a_cluster_sets_none_of_them(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
        use_local_ray_defaults(None)
    else:
        use_local_ray_defaults("ray://10.0.0.5:10001")

    assert [key for key in LOCAL_RAY_ENV if key in os.environ] == []


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "ray://localhost:10001", "[::1]:6379"])
def test_joining_a_ray_on_loopback_joins_on_loopback(clean_env: None, address: str) -> None:
    use_local_ray_defaults(address)

    assert {key: os.environ.get(key) for key in LOCAL_RAY_ENV if key in os.environ} == LOOPBACK_ENV
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"


def test_the_users_own_values_win(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "1")

    use_local_ray_defaults(None)

    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "1"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def closed() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once it is closed


@pytest.mark.parametrize("form", ["127.0.0.1:{}", "ray://127.0.0.1:{}", "http://127.0.0.1:{}/"])
def test_a_cluster_address_that_answers_passes(listening: int, form: str) -> None:
    check_reachable(form.format(listening))


@pytest.mark.parametrize("form", ["127.0.0.1:{}", "ray://127.0.0.1:{}", "http://127.0.0.1:{}"])
def test_a_cluster_address_nothing_answers_on_is_one_line_at_once(closed: int, form: str) -> None:
    address = form.format(closed)
    with pytest.raises(ClusterError) as refused:
        check_reachable(address)
    assert str(refused.value) == (
        f"no Ray cluster answers at {address} (Connection refused): check that it is up and the "
        "address (--address or RAY_ADDRESS)"
    )


@pytest.mark.parametrize("how", ["argument", "RAY_ADDRESS"])
def test_a_dashboard_url_is_refused_before_joining_and_names_the_address_to_use(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    url = "http://127.0.0.1:8265"
    if how == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", url)
    with pytest.raises(ClusterError, match=rf"^{url} is a Ray dashboard .* GCS address, HOST:6379"):
        ensure_ray(url if how == "argument" else None)


@pytest.mark.parametrize("address", ["auto", "ray-head", "http://ray-head"])
def test_addresses_without_a_port_are_left_to_ray(address: str) -> None:
    check_reachable(address)  # no lookup, no connection: nothing raised


def test_free_ports_are_different_free_and_not_the_ones_to_avoid() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        avoid = {taken.getsockname()[1]}
        ports = free_ports(20, besides=avoid)
    assert len(set(ports)) == 20 and not avoid & set(ports)
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("address", "parts"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("ray://head:10001/x", ("head", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("http://[fe80::1]:8265", ("fe80::1", 8265)),
        ("auto", ("auto", None)),
        ("head:port", ("head", None)),
    ],
)
def test_addresses_split_into_the_host_and_port_a_socket_takes(
    address: str, parts: tuple[str, int | None]
) -> None:
    assert split_address(address) == parts


def test_gpus_are_checked_on_a_local_ray_only(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 2.0})
    check_local_gpus(0, None, "--workers")
    check_local_gpus(2, None, "--workers")
    with pytest.raises(ConfigError, match=r"^--use-gpu needs 3 GPUs at once .* has 2: lower --wo"):
        check_local_gpus(3, None, "--workers")
    # A cluster's autoscaler may add GPU nodes.
    check_local_gpus(3, "10.0.0.1:6379", "--workers")
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(ConfigError, match=r"^train.use_gpu asks for GPUs but .* has none"):
        check_local_gpus(0.5, None, "--workers", option="train.use_gpu")
