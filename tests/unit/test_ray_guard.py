"""The unit-test Ray guard catches Ray being started or used, whatever ran before, on a fake Ray."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from support.ray_guard import forbid_ray


class FakeWorker:
    def __init__(self, connected: bool) -> None:
        self.connected = connected
        self.checks = 0

    def check_connected(self) -> None:
        self.checks += 1


def fake_ray(running: bool) -> types.ModuleType:
    """A stand-in for the parts of ``ray`` the guard touches."""
    ray = types.ModuleType("ray")
    worker = FakeWorker(running)

    def init() -> None:
        worker.connected = True

    ray.init = init  # type: ignore[attr-defined]
    ray.is_initialized = lambda: worker.connected  # type: ignore[attr-defined]
    ray._private = types.SimpleNamespace(  # type: ignore[attr-defined]
        worker=types.SimpleNamespace(global_worker=worker)
    )
    return ray


@contextmanager
def ray_module(ray: types.ModuleType | None) -> Iterator[pytest.MonkeyPatch]:
    """``sys.modules["ray"]`` is ``ray`` (None: not imported) inside the block only."""
    with pytest.MonkeyPatch.context() as patch:
        if ray is None:
            patch.delitem(sys.modules, "ray", raising=False)
        else:
            patch.setitem(sys.modules, "ray", ray)
        yield patch


@pytest.mark.parametrize("running", [False, True])
def test_a_test_that_leaves_ray_alone_passes(running: bool) -> None:
    ray = fake_ray(running)
    with ray_module(ray) as patch, forbid_ray(patch) as attempts:
        pass
    assert attempts == []


def test_ray_init_is_caught_even_when_ray_runs_already() -> None:
    ray = fake_ray(running=True)
    with (
        ray_module(ray) as patch,
        forbid_ray(patch) as attempts,
        pytest.raises(RuntimeError, match="must not start Ray"),
    ):
        ray.init()
    assert attempts == ["called ray.init()"]


def test_using_a_ray_an_earlier_test_started_is_caught() -> None:
    ray = fake_ray(running=True)
    worker = ray._private.worker.global_worker
    started, stop = threading.Event(), threading.Event()

    def earlier_background_thread() -> None:
        started.wait()
        worker.check_connected()
        stop.set()

    thread = threading.Thread(target=earlier_background_thread)
    thread.start()
    with ray_module(ray) as patch, forbid_ray(patch) as attempts:
        started.set()  # a thread that predates the test may talk to Ray
        stop.wait(timeout=30)
        with pytest.raises(RuntimeError, match="must not use Ray"):
            worker.check_connected()
    thread.join()
    assert attempts == ["used the Ray that an earlier test started"]
    assert worker.checks == 1  # the background thread's check went through


def test_ray_imported_and_started_during_the_test_is_caught() -> None:
    with ray_module(None) as patch, forbid_ray(patch) as attempts:
        patch.setitem(sys.modules, "ray", fake_ray(running=True))
    assert attempts == ["started Ray"]
