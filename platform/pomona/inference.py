"""Image bytes or files to class probabilities: the one inference path, in plain torch (no Ray).

``pomona predict``, ``pomona explain``, evaluation's Ray Data actors and the Serve replicas all
come through here. Images are decoded by :func:`pomona.data.images.preprocess` and normalised by
:func:`pomona.data.tensors.to_model_input` (the code ingest and training use) with the
preprocessing recorded in the model card, so an input is seen exactly as the training images
were; the size and decompression-bomb limits apply to bytes and files alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pomona.data import images
from pomona.data.manifest import Preprocessing
from pomona.data.tensors import INFERENCE_FORMAT, to_model_input
from pomona.errors import ConfigError
from pomona.models.artifact import load_model
from pomona.models.card import ModelCard
from pomona.models.fusion import fold_batch_norms

#: Images per forward pass: bounds memory for large inputs while still batching the common case.
IMAGES_PER_BATCH = 32

#: An image file and its pixels as preprocessed for a model.
Decoded = tuple[Path, np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """The most probable classes of one image.

    Attributes:
        labels: class names, most probable first.
        scores: their softmax probabilities, in the same order.
    """

    labels: tuple[str, ...]
    scores: tuple[float, ...]

    @property
    def label(self) -> str:
        """The predicted class."""
        return self.labels[0]

    @property
    def score(self) -> float:
        """Probability of the predicted class."""
        return self.scores[0]


def load_for_inference(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """A model directory's network ready to answer, and its card.

    :func:`pomona.models.load_model` (weights checked against the card, eval mode,
    channels-last), then every BatchNorm folded into its convolution
    (:func:`pomona.models.fusion.fold_batch_norms`): the same outputs up to float rounding, in
    fewer passes over the activations. Only for answering: the folded model is not saved or
    trained.
    """
    model, card = load_model(directory, device)
    fold_batch_norms(model)
    return model, card


def decode(
    data: bytes, spec: Preprocessing, max_pixels: int = images.DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode encoded image bytes into the uint8 ``spec.image_shape`` pixels the model expects.

    Raises:
        ImageRejected: empty, not an image, truncated, over ``max_pixels`` or an unusable mode.
    """
    return images.preprocess(data, spec, max_pixels)


def read_image(path: str | Path, spec: Preprocessing) -> np.ndarray:
    """Read and preprocess one image file into uint8 ``spec.image_shape`` pixels.

    Raises:
        ImageRejected: the file cannot be read or is not a usable image; the message names it.
    """
    try:
        return images.load(path, spec)
    except images.ImageRejected as error:
        raise images.ImageRejected(f"{path}: {error}") from None
    except OSError as error:
        raise images.ImageRejected(f"{path}: cannot read ({error.strerror or error})") from None


def read_images(paths: Iterable[str | Path], spec: Preprocessing) -> Iterator[Decoded]:
    """Each of ``paths`` read with :func:`read_image`, one at a time, as it is asked for."""
    for path in paths:
        yield Path(path), read_image(path, spec)


def batches(decoded: Iterable[Decoded]) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Decoded images in groups of :data:`IMAGES_PER_BATCH`: their paths and their pixels
    stacked into one uint8 ``(N, H, W, C)`` array. Only one group is held at a time."""
    it = iter(decoded)
    while group := list(islice(it, IMAGES_PER_BATCH)):
        yield [path for path, _ in group], np.stack([pixels for _, pixels in group])


def as_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 pixels as a tensor on ``device`` that owns its memory.

    Ray Data and Ray's object store hand out read-only views; torch must not alias those.
    """
    writable = np.require(pixels, dtype=np.uint8, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    return torch.from_numpy(writable).to(device)


def probabilities(model: nn.Module, spec: Preprocessing, pixels: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(N, classes)`` for uint8 ``(N, H, W, C)`` pixels.

    The pixels are normalised on the model's device, as in training, into the channels-last
    layout of a model from :func:`pomona.models.load_model`.
    """
    batch = as_tensor(pixels, next(model.parameters()).device)
    with torch.inference_mode():
        logits = model(to_model_input(batch, spec, INFERENCE_FORMAT))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def check_top_k(top_k: int) -> None:
    """Refuse a ``top_k`` below 1.

    Raises:
        ConfigError: naming the value.
    """
    if top_k < 1:
        raise ConfigError(f"top-k must be at least 1, got {top_k}")


def top_classes(probs: np.ndarray, classes: Sequence[str], k: int) -> list[Prediction]:
    """The ``k`` most probable classes of each row of ``probs`` (``k`` capped at the classes)."""
    check_top_k(k)
    k = min(k, len(classes))
    # A stable sort breaks ties towards the lower class index, as argmax does.
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        Prediction(labels=tuple(classes[i] for i in top), scores=tuple(float(row[i]) for i in top))
        for row, top in zip(probs, order, strict=True)
    ]


def predict_pixels(
    model: nn.Module, card: ModelCard, pixels: np.ndarray, k: int
) -> list[Prediction]:
    """Classify preprocessed uint8 ``(N, H, W, C)`` pixels in one forward pass."""
    check_top_k(k)
    return top_classes(probabilities(model, card.preprocessing, pixels), card.classes, k)


def predict_images(
    model: nn.Module, card: ModelCard, decoded: Iterable[Decoded], top_k: int
) -> list[tuple[Path, Prediction]]:
    """Classify decoded images (see :func:`read_images`), :data:`IMAGES_PER_BATCH` per
    forward pass: each image's file and prediction, in their order.

    Raises:
        ConfigError: ``top_k`` is below 1.
    """
    check_top_k(top_k)
    predicted: list[tuple[Path, Prediction]] = []
    for paths, pixels in batches(decoded):
        predicted += zip(paths, predict_pixels(model, card, pixels, top_k), strict=True)
    return predicted
