"""A guard that catches a test starting Ray, or using a Ray that an earlier test left running.

Checking only whether Ray runs after a test is blind once any earlier test in the session has
started Ray (the e2e and integration tests share one). So the guard also replaces ``ray.init``
and the driver's connection check for the duration of the test: every Ray API call (tasks,
actors, ``ray.get``, Ray Data execution) passes through ``check_connected``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def forbid_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Yield a list that, once the block ends, names every way the block touched Ray.

    Calls from threads that existed before the block (Ray's own, or ones an earlier test left
    behind) are not the block's doing and pass through.
    """
    attempts: list[str] = []
    ray = sys.modules.get("ray")
    was_running = ray is not None and ray.is_initialized()
    if ray is not None:

        def refuse_init(*_args: object, **_kwargs: object) -> None:
            attempts.append("called ray.init()")
            raise RuntimeError("unit tests must not start Ray; move it to tests/integration")

        monkeypatch.setattr(ray, "init", refuse_init)
        worker = ray._private.worker.global_worker
        check_connected = worker.check_connected
        older = {thread.ident for thread in threading.enumerate()} - {threading.get_ident()}

        def refuse_use() -> None:
            if threading.get_ident() not in older:
                attempts.append("used the Ray that an earlier test started")
                raise RuntimeError("unit tests must not use Ray; move it to tests/integration")
            check_connected()

        monkeypatch.setattr(worker, "check_connected", refuse_use)
    yield attempts
    ray = sys.modules.get("ray")
    if not was_running and ray is not None and ray.is_initialized():
        attempts.append("started Ray")
