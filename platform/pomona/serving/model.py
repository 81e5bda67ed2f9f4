"""The model deployment: the versions of one model name, loaded once per replica, batched.

Requests carry the version as Serve's multiplexed model id, so Serve routes them to replicas that
already hold that version and splits batches by version; a replica loads a version from the
registry (checksums verified) on first use and keeps the most recently used few.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from ray import serve
from torch import nn

from pomona.evaluate.explain import gradcam_overlays
from pomona.evaluate.html import png_bytes
from pomona.inference import probabilities
from pomona.models.artifact import load_model
from pomona.models.card import ModelCard
from pomona.registry import ModelRef, Registry
from pomona.serving.config import AppArgs, BatchSettings
from pomona.serving.metrics import model_metrics

logger = logging.getLogger(__name__)

#: Versions one replica keeps loaded; a canary and a production version with room to promote.
VERSIONS_PER_REPLICA = 4


@serve.deployment
class ModelDeployment:
    """Batched forward passes for every served version of one model.

    Args:
        args: the application's arguments (registry, torch threads).
        name: the model name.
    """

    def __init__(self, args: dict[str, Any], name: str) -> None:
        self._args = AppArgs.model_validate(args)
        self._name = name
        self._registry = Registry(self._args.registry)
        # Replicas run beside each other on few cores: more intra-op threads than the replica's
        # CPUs only adds hand-offs.
        torch.set_num_threads(self._args.torch_threads)
        self._metrics = model_metrics(name)
        self._waiting = 0

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Apply new batch settings without a restart (Serve calls this for ``user_config``)."""
        settings = BatchSettings.model_validate(config)
        self._forward.set_max_batch_size(settings.max_batch_size)
        self._forward.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        logger.info("%s batches: %s", self._name, settings)

    @serve.multiplexed(max_num_models_per_replica=VERSIONS_PER_REPLICA)
    async def _load(self, version: str) -> tuple[nn.Module, ModelCard]:
        ref = ModelRef(self._name, version=int(version))
        model_dir = self._registry.local_path(ref)  # checks every file's sha256
        logger.info("loading %s from %s", ref, model_dir)
        return load_model(model_dir, "cpu")

    async def card(self) -> ModelCard:
        """The model card of the version this request is for (its multiplexed id)."""
        _, card = await self._load(serve.get_multiplexed_model_id())
        return card

    async def explain(self, pixels: np.ndarray) -> bytes:
        """Grad-CAM overlay PNG of one preprocessed image, for its predicted class."""
        model, card = await self._load(serve.get_multiplexed_model_id())
        (picture,) = gradcam_overlays(model, card.architecture, card.preprocessing, pixels[None])
        return png_bytes(picture)

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities of one preprocessed uint8 ``(H, W, C)`` image, batched."""
        self._waiting += 1
        self._metrics.queue_depth.set(self._waiting)
        try:
            return await self._forward(pixels)
        finally:
            self._waiting -= 1
            self._metrics.queue_depth.set(self._waiting)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _forward(self, images: list[np.ndarray]) -> list[np.ndarray]:
        version = serve.get_multiplexed_model_id()
        model, card = await self._load(version)
        tags = {"version": version}
        start = time.perf_counter()
        probs = probabilities(model, card.preprocessing, np.stack(images))
        self._metrics.model_latency.observe(time.perf_counter() - start, tags)
        self._metrics.batch_size.observe(len(images), tags)
        return list(probs)
