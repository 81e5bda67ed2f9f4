"""The model card: what a trained model is, recorded next to its weights.

A *model directory* holds exactly two files: ``model.safetensors`` (the state dict, never pickle)
and ``model.json`` (a :class:`ModelCard`). Training writes one for the best epoch, the registry
stores them as immutable versions, and evaluation, prediction and serving load them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from pomona.config import StrictModel
from pomona.data.manifest import Preprocessing

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"


class InitialWeights(StrictModel):
    """Where a fine-tuned model's training started, and what became of the classifier head.

    Attributes:
        source: the pretrained weights as resolved on the driver: an absolute path (a registry
            reference is recorded as its version directory) or ``torchvision:<Weights>.<member>``.
        head: ``kept`` when the source's head was loaded (its classes are the dataset's),
            ``new`` when the head started from a fresh initialisation.
        reason: why, in words (e.g. "the classes differ: ...", "forced by model.head=new").
    """

    source: str
    head: Literal["kept", "new"]
    reason: str


class ModelCard(StrictModel):
    """Everything needed to rebuild, feed and judge a model.

    Attributes:
        architecture: key in :data:`pomona.models.zoo.ARCHITECTURES`.
        classes: class names; output index i is ``classes[i]``.
        preprocessing: exactly how inputs were prepared during training.
        weights_sha256: sha256 of ``model.safetensors``, checked on load.
        metrics: e.g. ``val_error``, ``val_loss``, ``epoch``; evaluation may add test metrics.
        training: the training configuration, as a plain mapping.
        dataset_sha256: sha256 of the dataset's ``manifest.json``.
        initial_weights: the pretrained weights training started from; None when it started
            from a random initialisation.
    """

    schema_version: Literal[1] = 1
    architecture: str
    classes: list[str] = Field(min_length=2)
    preprocessing: Preprocessing
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    metrics: dict[str, float] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    dataset_sha256: str | None = None
    initial_weights: InitialWeights | None = None
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.classes)
