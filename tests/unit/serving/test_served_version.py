"""A served model version batches its own images and answers as the plain inference path does.

No Ray: ``@serve.batch`` runs on the test's event loop, and the metrics are recorders.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ray import serve
from support.fake_models import make_model_dir

from pomona.errors import ConfigError
from pomona.inference import probabilities
from pomona.models import load_model
from pomona.registry import Registry
from pomona.serving import model as model_module
from pomona.serving.config import BatchSettings
from pomona.serving.metrics import ModelMetrics
from pomona.serving.model import ServedVersion, load_version


class _Recorder:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.values[tags["version"]].append(value)

    set = observe


def _metrics() -> ModelMetrics:
    return ModelMetrics(model_latency=_Recorder(), batch_size=_Recorder(), queue_depth=_Recorder())


@pytest.fixture(autouse=True)
def _replica_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # @serve.batch reads the replica's max_ongoing_requests for a warning when its queue is made.
    config = SimpleNamespace(max_ongoing_requests=100)
    monkeypatch.setattr(
        serve, "get_replica_context", lambda: SimpleNamespace(_deployment_config=config)
    )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    for seed in (1, 2):
        registry.register(make_model_dir(tmp_path / f"m{seed}", seed), "cats")
    return registry


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 8, 8, 1), dtype=np.uint8)


def test_concurrent_requests_share_batches_of_the_configured_size(registry: Registry) -> None:
    metrics = _metrics()
    served = load_version(registry, "cats", 1, metrics, BatchSettings(max_batch_size=4), 1)
    images = _images(8)

    async def one_each() -> list[np.ndarray]:
        return await asyncio.gather(*(served.predict(image[None]) for image in images))

    async def before_and_after_a_change() -> tuple[list[np.ndarray], list[np.ndarray]]:
        # One event loop, as in a replica: the batch queue belongs to the loop that made it.
        before = await one_each()
        served.configure(BatchSettings(max_batch_size=2, batch_wait_timeout_s=0.1))
        return before, await one_each()

    before, after = asyncio.run(before_and_after_a_change())
    model, card = load_model(registry.local_path("cats:1"), "cpu")
    want = probabilities(model, card.preprocessing, images)
    np.testing.assert_allclose(np.concatenate(before), want, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(after), want, atol=1e-6)
    assert metrics.batch_size.values["1"] == [4, 4, 2, 2, 2, 2]
    assert metrics.queue_depth.values["1"][-1] == 0


def test_each_version_batches_only_its_own_images(registry: Registry) -> None:
    metrics = _metrics()
    settings = BatchSettings(max_batch_size=8, batch_wait_timeout_s=0.1)
    first, second = (load_version(registry, "cats", v, metrics, settings, 1) for v in (1, 2))
    images = _images(6)

    async def interleaved() -> list[np.ndarray]:
        calls = [
            (first if i % 2 else second).predict(image[None]) for i, image in enumerate(images)
        ]
        return await asyncio.gather(*calls)

    rows = asyncio.run(interleaved())
    assert metrics.batch_size.values == {"1": [3], "2": [3]}
    # Different weights, different answers: no image went through the other version.
    assert not np.allclose(rows[0], rows[1])
    assert first.card.classes == ["cat", "dog"]
    assert isinstance(first, ServedVersion)


@pytest.mark.parametrize("concurrent", [1, 2])
def test_forward_passes_overlap_up_to_the_configured_count(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, concurrent: int
) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def slow_probabilities(*args: object) -> np.ndarray:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.1)
        with lock:
            running -= 1
        return probabilities(*args)

    monkeypatch.setattr(model_module, "probabilities", slow_probabilities)
    settings = BatchSettings(max_batch_size=2, batch_wait_timeout_s=0.0)
    served = load_version(registry, "cats", 1, _metrics(), settings, concurrent)
    images = _images(6)

    async def one_each() -> list[np.ndarray]:
        return await asyncio.gather(*(served.predict(image[None]) for image in images))

    rows = asyncio.run(one_each())
    model, card = load_model(registry.local_path("cats:1"), "cpu")
    want = probabilities(model, card.preprocessing, images)
    np.testing.assert_allclose(np.concatenate(rows), want, atol=1e-6)
    assert most == concurrent


def test_explain_returns_a_png(registry: Registry) -> None:
    served = load_version(registry, "cats", 1, _metrics(), BatchSettings(), 1)
    png = asyncio.run(served.explain(_images(1)[0]))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_a_replica_runs_on_cuda_only_when_given_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def given(gpus: list[int], cuda: bool) -> None:
        monkeypatch.setattr(model_module.ray, "get_gpu_ids", lambda: gpus)
        monkeypatch.setattr(model_module.torch.cuda, "is_available", lambda: cuda)

    given([], cuda=True)
    assert model_module.replica_device() == "cpu"
    given([0], cuda=True)
    assert model_module.replica_device() == "cuda"
    given([3], cuda=False)
    monkeypatch.setattr(model_module.torch.version, "cuda", None)
    with pytest.raises(ConfigError, match=r"given GPU 3 but torch .* is a CPU-only build"):
        model_module.replica_device()
    monkeypatch.setattr(model_module.torch.version, "cuda", "13.0")
    with pytest.raises(ConfigError, match=r"given GPU 3 but torch .* finds no usable CUDA device"):
        model_module.replica_device()
