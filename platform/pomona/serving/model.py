"""One served model version in a replica: loaded once, batched forward passes, Grad-CAM.

The ``api`` deployment holds one :class:`ServedVersion` per version its routing table serves, in
the same process that parses HTTP and decodes images: a request costs no hop between actors.
Each version batches on its own (a ``@serve.batch`` queue per instance), and its forward passes
run on worker threads (torch releases the GIL), so the replica's event loop keeps reading and
decoding the next requests while batches compute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
import ray
import torch
from ray import serve
from torch import nn

from pomona.errors import ConfigError
from pomona.evaluate.explain import gradcam_overlays
from pomona.evaluate.html import png_bytes
from pomona.inference import load_for_inference, probabilities
from pomona.models.card import ModelCard
from pomona.registry import ModelRef, Registry
from pomona.serving.config import BatchSettings
from pomona.serving.metrics import ModelMetrics

logger = logging.getLogger(__name__)


class ServedVersion:
    """Version ``version`` of model ``name``, ready to answer.

    Args:
        name: the model name.
        version: the version number.
        model: its network, in eval mode.
        card: its model card (classes, preprocessing).
        metrics: the replica's model metrics.
        batch: initial batch settings.
        concurrent_batches: forward passes run at once (fixed: Serve cannot change it live).
    """

    def __init__(
        self,
        name: str,
        version: int,
        model: nn.Module,
        card: ModelCard,
        metrics: ModelMetrics,
        batch: BatchSettings,
        concurrent_batches: int,
    ) -> None:
        self.name = name
        self.version = version
        self.card = card
        self._model = model
        self._metrics = metrics
        self._tags = {"model": name, "version": str(version)}
        self._waiting = 0
        # Decorated per instance: @serve.batch keeps one queue per decorated function, and each
        # version must batch only its own images.
        self._forward: Callable[[np.ndarray], Awaitable[np.ndarray]] = serve.batch(
            max_batch_size=batch.max_batch_size,
            batch_wait_timeout_s=batch.batch_wait_timeout_s,
            max_concurrent_batches=concurrent_batches,
        )(self._forward_batch)

    def configure(self, batch: BatchSettings) -> None:
        """Apply new batch settings; images already queued keep their place."""
        self._forward.set_max_batch_size(batch.max_batch_size)  # type: ignore[attr-defined]
        self._forward.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)  # type: ignore[attr-defined]

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities of preprocessed uint8 ``(N, H, W, C)`` images, batched."""
        self._waiting += len(pixels)
        self._metrics.queue_depth.set(self._waiting, self._tags)
        try:
            rows = await asyncio.gather(*(self._forward(image) for image in pixels))
        finally:
            self._waiting -= len(pixels)
            self._metrics.queue_depth.set(self._waiting, self._tags)
        return np.stack(rows)

    async def explain(self, pixels: np.ndarray) -> bytes:
        """Grad-CAM overlay PNG of one preprocessed image, for its predicted class."""

        def overlay() -> bytes:
            (picture,) = gradcam_overlays(
                self._model, self.card.architecture, self.card.preprocessing, pixels[None]
            )
            return png_bytes(picture)

        return await asyncio.to_thread(overlay)

    async def _forward_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        start = time.perf_counter()
        probs = await asyncio.to_thread(
            probabilities, self._model, self.card.preprocessing, np.stack(images)
        )
        self._metrics.model_latency.observe(time.perf_counter() - start, self._tags)
        self._metrics.batch_size.observe(len(images), self._tags)
        return list(probs)


def replica_device() -> str:
    """Where this replica runs its models: ``cuda`` when Ray gave it a GPU (``num_gpus`` in its
    ``ray_actor_options``; Ray makes that GPU the only one CUDA sees), else ``cpu``.

    Raises:
        ConfigError: Ray gave it a GPU that torch cannot use (a CPU-only build of torch, or a
            node whose NVIDIA driver does not work).
    """
    gpus = ray.get_gpu_ids()
    if not gpus:
        return "cpu"
    if not torch.cuda.is_available():
        given = f"this replica was given GPU {', '.join(map(str, gpus))}"
        if torch.version.cuda is None:
            raise ConfigError(
                f"{given} but torch {torch.__version__} is a CPU-only build: install a CUDA "
                "build of torch on the serving nodes, or serve without GPUs"
            )
        raise ConfigError(
            f"{given} but torch {torch.__version__} finds no usable CUDA device: check the "
            "node's NVIDIA driver (nvidia-smi), or serve without GPUs"
        )
    return "cuda"


def load_version(
    registry: Registry,
    name: str,
    version: int,
    metrics: ModelMetrics,
    batch: BatchSettings,
    concurrent_batches: int,
    device: str = "cpu",
) -> ServedVersion:
    """Load ``name:version`` from ``registry`` onto ``device``, every file's sha256 checked
    first, to batch with ``batch`` and run ``concurrent_batches`` forward passes at once.

    Raises:
        ModelNotFoundError: the version does not exist.
        CheckpointError: a file is missing or corrupted.
    """
    model_dir = registry.local_path(ModelRef(name, version=version))
    logger.info("loading %s:%d from %s onto %s", name, version, model_dir, device)
    model, card = load_for_inference(model_dir, device)
    return ServedVersion(name, version, model, card, metrics, batch, concurrent_batches)
