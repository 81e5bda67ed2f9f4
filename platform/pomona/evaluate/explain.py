"""Grad-CAM explanations for images, in plain torch (no Ray).

Images are read and normalised by :mod:`pomona.inference`, the path every prediction takes, so an
explanation is computed on exactly what the model classified.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from pomona.data.manifest import Preprocessing
from pomona.data.tensors import INFERENCE_FORMAT, to_model_input
from pomona.evaluate.gradcam import grad_cam, overlay
from pomona.evaluate.html import png_bytes
from pomona.inference import Decoded, Prediction, as_tensor, batches, predict_pixels
from pomona.models.card import ModelCard
from pomona.models.zoo import target_layer
from pomona.storage import atomic_write_bytes

OVERLAY_SUFFIX = ".gradcam.png"


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
    inputs = to_model_input(as_tensor(pixels, device), spec, INFERENCE_FORMAT)
    targets = None if class_idx is None else torch.as_tensor(class_idx, device=device)
    heatmaps = grad_cam(model, target_layer(model, architecture), inputs, targets)
    return [overlay(image, heatmap) for image, heatmap in zip(pixels, heatmaps, strict=True)]


class OverlayFiles:
    """Where the Grad-CAM overlays of image files are written.

    Overlays keep the files' folders below the one folder all of ``sources`` share, and are
    named ``<file stem>.gradcam.png``: ``shapes/circle/01.png`` and ``shapes/square/01.png`` give
    ``OUT/circle/01.gradcam.png`` and ``OUT/square/01.gradcam.png``; one file gives
    ``OUT/<stem>.gradcam.png``. Files of one folder that share a stem (``01.png``, ``01.jpg``)
    get ``-2``, ``-3``... in the order written, so no overlay overwrites another.

    Args:
        out_dir: where to write the overlays (created if missing).
        sources: every image file that may be written for; their shared folder is the root.
    """

    def __init__(self, out_dir: str | Path, sources: Sequence[str | Path]) -> None:
        self._out_dir = Path(out_dir)
        parents = [os.path.dirname(os.path.abspath(path)) for path in sources]
        self._root = Path(os.path.commonpath(parents)) if parents else None
        self._taken: set[Path] = set()

    def write(self, source: str | Path, picture: np.ndarray) -> Path:
        """Write the overlay ``picture`` of image file ``source``; returns the file written."""
        absolute = Path(os.path.abspath(source))
        folder = self._out_dir / absolute.parent.relative_to(self._root or absolute.parent)
        target, copy = folder / f"{absolute.stem}{OVERLAY_SUFFIX}", 1
        while target in self._taken:  # 01.png and 01.jpg side by side
            copy += 1
            target = folder / f"{absolute.stem}-{copy}{OVERLAY_SUFFIX}"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, png_bytes(picture))
        self._taken.add(target)
        return target


class Explanation(NamedTuple):
    """One image explained: its file, its top class, and its overlay file."""

    image: Path
    prediction: Prediction
    overlay: Path


def explain_images(
    model: nn.Module, card: ModelCard, decoded: Iterable[Decoded], files: OverlayFiles
) -> list[Explanation]:
    """Classify decoded images (see :func:`pomona.inference.read_images`) and write each one's
    Grad-CAM overlay for the class predicted, :data:`~pomona.inference.IMAGES_PER_BATCH` at a
    time.

    Returns:
        One explanation per image, in their order.
    """
    explained: list[Explanation] = []
    for paths, pixels in batches(decoded):
        predictions = predict_pixels(model, card, pixels, 1)
        overlays = gradcam_overlays(model, card.architecture, card.preprocessing, pixels)
        for path, prediction, picture in zip(paths, predictions, overlays, strict=True):
            explained.append(Explanation(path, prediction, files.write(path, picture)))
    return explained
