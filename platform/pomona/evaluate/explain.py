"""Grad-CAM explanations for images, in plain torch (no Ray).

Images are read and normalised by :mod:`pomona.inference`, the path every prediction takes, so an
explanation is computed on exactly what the model classified.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pomona.data.manifest import Preprocessing
from pomona.data.tensors import INFERENCE_FORMAT, to_model_input
from pomona.evaluate.gradcam import grad_cam, overlay
from pomona.evaluate.html import png_bytes
from pomona.inference import as_tensor, chunks, load_images
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


def explain_files(
    model: nn.Module,
    card: ModelCard,
    architecture: str,
    paths: Sequence[str | Path],
    out_dir: str | Path,
) -> list[Path]:
    """Write a Grad-CAM overlay PNG per image file, for the class the model predicts.

    Overlays keep the files' folders below the one folder all of them share, and are named
    ``<file stem>.gradcam.png``: ``shapes/circle/01.png`` and ``shapes/square/01.png`` give
    ``OUT/circle/01.gradcam.png`` and ``OUT/square/01.gradcam.png``; one file gives
    ``OUT/<stem>.gradcam.png``. Files of one folder that share a stem (``01.png``, ``01.jpg``)
    get ``-2``, ``-3``... in the order given, so no overlay overwrites another.

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
    absolute = [Path(os.path.abspath(path)) for path in paths]
    shared = Path(os.path.commonpath([path.parent for path in absolute])) if paths else out_dir
    written: list[Path] = []
    taken: set[Path] = set()
    for chunk in chunks(paths):
        pixels = load_images(chunk, card.preprocessing)
        overlays = gradcam_overlays(model, architecture, card.preprocessing, pixels)
        for picture in overlays:
            source = absolute[len(written)]
            folder = out_dir / source.parent.relative_to(shared)
            target, copy = folder / f"{source.stem}{OVERLAY_SUFFIX}", 1
            while target in taken:  # 01.png and 01.jpg side by side
                copy += 1
                target = folder / f"{source.stem}-{copy}{OVERLAY_SUFFIX}"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, png_bytes(picture))
            written.append(target)
            taken.add(target)
    return written
