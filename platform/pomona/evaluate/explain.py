"""Predictions and Grad-CAM explanations for image files, in plain torch (no Ray).

Files go through :func:`pomona.data.images.load` and :func:`pomona.data.tensors.to_model_input`,
the same code that ingest and training use, with the preprocessing recorded in the model card,
so a file is seen exactly as the training images were.
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
from pomona.data.tensors import to_model_input
from pomona.errors import ConfigError
from pomona.evaluate.gradcam import grad_cam, overlay
from pomona.evaluate.html import png_bytes
from pomona.models.card import ModelCard
from pomona.models.zoo import target_layer
from pomona.storage import atomic_write_bytes

# Files per forward pass: bounds memory for large inputs (Grad-CAM keeps activations and their
# gradients) while still batching the common case of a handful of files.
_FILES_PER_BATCH = 32
OVERLAY_SUFFIX = ".gradcam.png"


@dataclass(frozen=True)
class Prediction:
    """The most probable classes of one file.

    Attributes:
        path: the file.
        labels: class names, most probable first.
        scores: their softmax probabilities, in the same order.
    """

    path: Path
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


def _to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    # Ray Data hands out read-only views of its blocks; torch must not alias those.
    writable = np.require(pixels, dtype=np.uint8, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    return torch.from_numpy(writable).to(device)


def probabilities(model: nn.Module, spec: Preprocessing, pixels: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(N, classes)`` for uint8 ``(N, H, W, C)`` pixels.

    The pixels are normalised on the model's device, as in training.
    """
    batch = _to_tensor(pixels, next(model.parameters()).device)
    with torch.inference_mode():
        logits = model(to_model_input(batch, spec))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def gradcam_overlays(
    model: nn.Module,
    architecture: str,
    spec: Preprocessing,
    pixels: np.ndarray,
    class_idx: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Grad-CAM heat maps blended over the pixels they explain.

    Args:
        model: the classifier.
        architecture: its architecture key, which names the layer to hook.
        spec: the model card's preprocessing.
        pixels: uint8 ``(N, H, W, C)`` images as preprocessed for the model.
        class_idx: class to explain per image; None explains the predicted class.

    Returns:
        One uint8 ``(H, W, 3)`` overlay per image.
    """
    device = next(model.parameters()).device
    inputs = to_model_input(_to_tensor(pixels, device), spec)
    targets = None if class_idx is None else torch.as_tensor(class_idx, device=device)
    heatmaps = grad_cam(model, target_layer(model, architecture), inputs, targets)
    return [overlay(image, heatmap) for image, heatmap in zip(pixels, heatmaps, strict=True)]


def _chunks(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    for start in range(0, len(paths), _FILES_PER_BATCH):
        yield [Path(p) for p in paths[start : start + _FILES_PER_BATCH]]


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
    if top_k < 1:
        raise ConfigError(f"top-k must be at least 1, got {top_k}")
    k = min(top_k, card.num_classes)
    predictions = []
    for chunk in _chunks(paths):
        probs = probabilities(model, card.preprocessing, load_images(chunk, card.preprocessing))
        # A stable sort breaks ties towards the lower class index, as argmax does.
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for path, row, top in zip(chunk, probs, order, strict=True):
            predictions.append(
                Prediction(
                    path=path,
                    labels=tuple(card.classes[i] for i in top),
                    scores=tuple(float(row[i]) for i in top),
                )
            )
    return predictions


def explain_files(
    model: nn.Module,
    card: ModelCard,
    architecture: str,
    paths: Sequence[str | Path],
    out_dir: str | Path,
) -> list[Path]:
    """Write a Grad-CAM overlay PNG per image file, for the class the model predicts.

    Overlays are named ``<file stem>.gradcam.png``; files sharing a stem get ``-2``, ``-3``...
    in the order given, so no overlay overwrites another.

    Args:
        model: the classifier.
        card: its model card.
        architecture: its architecture key (names the layer Grad-CAM hooks).
        paths: image files.
        out_dir: where to write the overlays (created if missing).

    Returns:
        The overlay files, in the order of ``paths``.

    Raises:
        ImageRejected: a file cannot be read or is not a usable image; the message names it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for chunk in _chunks(paths):
        pixels = load_images(chunk, card.preprocessing)
        overlays = gradcam_overlays(model, architecture, card.preprocessing, pixels)
        for path, picture in zip(chunk, overlays, strict=True):
            name, copy = f"{path.stem}{OVERLAY_SUFFIX}", 1
            while name in taken:
                copy += 1
                name = f"{path.stem}-{copy}{OVERLAY_SUFFIX}"
            taken.add(name)
            target = out_dir / name
            atomic_write_bytes(target, png_bytes(picture))
            written.append(target)
    return written
