"""Image bytes or files to class probabilities: the one inference path, in plain torch (no Ray).

``pomona predict``, ``pomona explain``, evaluation's Ray Data actors and the Serve replicas all
come through here. Images are decoded by :func:`pomona.data.images.preprocess` and normalised by
:func:`pomona.data.tensors.to_model_input` (the code ingest and training use) with the
preprocessing recorded in the model card, so an input is seen exactly as the training images
were; the size and decompression-bomb limits apply to bytes and files alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


def load_images(paths: Sequence[str | Path], spec: Preprocessing) -> np.ndarray:
    """Read and preprocess files into one uint8 ``(N, H, W, C)`` array.

    Raises:
        ImageRejected: a file cannot be read or is not a usable image; the message names it.
    """
    pixels = []
    for path in paths:
        try:
            pixels.append(images.load(path, spec))
        except images.ImageRejected as error:
            raise images.ImageRejected(f"{path}: {error}") from None
        except OSError as error:
            raise images.ImageRejected(f"{path}: cannot read ({error.strerror or error})") from None
    return np.stack(pixels)


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


def chunks(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """``paths`` in groups of :data:`IMAGES_PER_BATCH`, as ``Path`` objects."""
    for start in range(0, len(paths), IMAGES_PER_BATCH):
        yield [Path(p) for p in paths[start : start + IMAGES_PER_BATCH]]


def predict_files(
    model: nn.Module, card: ModelCard, paths: Sequence[str | Path], top_k: int
) -> list[Prediction]:
    """Classify image files.

    Args:
        model: the classifier, e.g. from :func:`pomona.models.load_model`.
        card: its model card (classes and preprocessing).
        paths: image files.
        top_k: how many classes to return per file (capped at the number of classes).

    Returns:
        One prediction per file, in the order of ``paths``.

    Raises:
        ConfigError: ``top_k`` is below 1.
        ImageRejected: a file cannot be read or is not a usable image; the message names it.
    """
    check_top_k(top_k)
    predictions: list[Prediction] = []
    for chunk in chunks(paths):
        predictions += predict_pixels(model, card, load_images(chunk, card.preprocessing), top_k)
    return predictions
