"""Unit tests are plain Python: a test that starts Ray, or uses one already running, fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from support.ray_guard import forbid_ray


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with forbid_ray(monkeypatch) as attempts:
        yield
    if attempts:
        pytest.fail(f"a unit test {attempts[0]}; move it to tests/integration")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine the thread
    # hand-offs make every op ~100x slower (seconds per test instead of milliseconds).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
