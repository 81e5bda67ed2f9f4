"""Grad-CAM overlays for image files, fed exactly as in training."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pomona.data import images
from pomona.data.tensors import to_model_input
from pomona.evaluate.explain import OverlayFiles, explain_images
from pomona.evaluate.gradcam import grad_cam, overlay
from pomona.inference import read_images
from pomona.models import load_model, target_layer
from pomona.models.card import ModelCard


def explain_files(model: nn.Module, card: ModelCard, paths: list[Path], out: Path) -> list[Path]:
    decoded = read_images(paths, card.preprocessing)
    explained = explain_images(model, card, decoded, OverlayFiles(out, paths))
    assert [explanation.image for explanation in explained] == paths
    return [explanation.overlay for explanation in explained]


def test_missing_files_are_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, card = load_model(tiny_model_dir)
    missing = tmp_path / "missing.png"
    with pytest.raises(images.ImageRejected, match=f"^{re.escape(str(missing))}: cannot read"):
        explain_files(model, card, [missing], tmp_path / "out")


def test_explain_writes_one_overlay_per_file_for_the_predicted_class(
    tiny_model_dir: Path, image_files: list[Path], tmp_path: Path
) -> None:
    model, card = load_model(tiny_model_dir)
    twin = tmp_path / "other" / image_files[0].name  # same stem as image_files[0]
    twin.parent.mkdir()
    twin.write_bytes(image_files[1].read_bytes())
    inputs = [*image_files[:3], twin]

    written = explain_files(model, card, inputs, tmp_path / "out")

    # Below the folder the inputs share, their folders are kept: no two overlays collide.
    out = tmp_path / "out"
    assert written == [
        out / "images" / "0.gradcam.png",
        out / "images" / "1.gradcam.png",
        out / "images" / "2.gradcam.png",
        out / "other" / "0.gradcam.png",
    ]
    one = explain_files(model, card, [twin], tmp_path / "one")
    assert one == [tmp_path / "one" / "0.gradcam.png"]
    # Two files of one folder with one stem: the second is numbered, neither is lost.
    jpeg = image_files[0].with_suffix(".jpg")
    Image.open(image_files[1]).convert("RGB").save(jpeg)
    pair = explain_files(model, card, [image_files[0], jpeg], tmp_path / "pair")
    assert pair == [tmp_path / "pair" / "0.gradcam.png", tmp_path / "pair" / "0-2.gradcam.png"]
    assert all(path.is_file() for path in pair)
    pixels = np.stack([images.load(p, card.preprocessing) for p in inputs])
    batch = to_model_input(torch.from_numpy(pixels), card.preprocessing)
    heatmaps = grad_cam(model, target_layer(model, card.architecture), batch)
    for path, image, heatmap in zip(written, pixels, heatmaps, strict=True):
        with Image.open(path) as png:
            assert png.mode == "RGB" and png.size == (96, 96)  # 8x8 enlarged 12x
            shown = np.asarray(png)[::12, ::12]
        assert np.array_equal(shown, overlay(image, heatmap))
    assert Image.open(io.BytesIO(written[3].read_bytes())).size == (96, 96)
