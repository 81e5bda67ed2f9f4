"""Predictions and Grad-CAM overlays for image files, fed exactly as in training."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pomona.data import images
from pomona.data.manifest import Preprocessing
from pomona.data.tensors import to_model_input
from pomona.errors import ConfigError
from pomona.evaluate import explain
from pomona.evaluate.explain import explain_files, predict_files
from pomona.evaluate.gradcam import grad_cam, overlay
from pomona.models import build_model, load_model, save_model, target_layer

PLATFORM = Path(__file__).resolve().parents[3] / "platform"
CLASSES = ["circle", "cross", "square"]


@pytest.fixture(params=[1, 3], ids=["gray", "rgb"])
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A tiny simple_cnn with BatchNorm statistics moved off their defaults, saved to disk."""
    channels = request.param
    torch.manual_seed(channels)
    model = build_model("simple_cnn", len(CLASSES), channels)
    model.train()
    model(torch.randn(8, channels, 8, 8))
    save_model(
        tmp_path / "model",
        model.eval(),
        architecture="simple_cnn",
        classes=CLASSES,
        preprocessing=Preprocessing(height=8, width=8, channels=channels),
    )
    return tmp_path / "model"


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Five RGB PNGs of 20x14 pixels: preprocessing must resize and convert them."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(5):
        path = tmp_path / "images" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (14, 20, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def expected_probabilities(model_dir: Path, paths: list[Path]) -> np.ndarray:
    model, card = load_model(model_dir)
    pixels = np.stack([images.load(p, card.preprocessing) for p in paths])
    with torch.no_grad():
        logits = model(to_model_input(torch.from_numpy(pixels), card.preprocessing))
    return torch.softmax(logits, dim=1).numpy()


def test_predictions_use_the_training_preprocessing(
    saved: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two files per batch, so batching across chunks is exercised too.
    monkeypatch.setattr(explain, "_FILES_PER_BATCH", 2)
    model, card = load_model(saved)
    predictions = predict_files(model, card, files, top_k=2)
    expected = expected_probabilities(saved, files)
    assert [p.path for p in predictions] == files
    for prediction, probs in zip(predictions, expected, strict=True):
        order = np.argsort(-probs)[:2]
        assert prediction.labels == tuple(CLASSES[i] for i in order)
        assert prediction.scores == pytest.approx(probs[order].tolist(), abs=1e-6)
        assert prediction.label == CLASSES[probs.argmax()]
        assert prediction.score == pytest.approx(probs.max(), abs=1e-6)


def test_top_k_is_capped_and_validated(saved: Path, files: list[Path]) -> None:
    model, card = load_model(saved)
    (prediction,) = predict_files(model, card, files[:1], top_k=10)
    assert sorted(prediction.labels) == sorted(CLASSES)
    assert sum(prediction.scores) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="top-k must be at least 1, got 0"):
        predict_files(model, card, files, top_k=0)


def test_bad_files_are_named(saved: Path, files: list[Path], tmp_path: Path) -> None:
    model, card = load_model(saved)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(images.ImageRejected, match=f"^{re.escape(str(broken))}: "):
        predict_files(model, card, [*files, broken], top_k=1)
    missing = tmp_path / "missing.png"
    with pytest.raises(images.ImageRejected, match=f"^{re.escape(str(missing))}: cannot read"):
        explain_files(model, card, card.architecture, [missing], tmp_path / "out")


def test_explain_writes_one_overlay_per_file_for_the_predicted_class(
    saved: Path, files: list[Path], tmp_path: Path
) -> None:
    model, card = load_model(saved)
    twin = tmp_path / "other" / files[0].name  # same stem as files[0]
    twin.parent.mkdir()
    twin.write_bytes(files[1].read_bytes())
    inputs = [*files[:3], twin]

    written = explain_files(model, card, card.architecture, inputs, tmp_path / "out")

    assert [p.name for p in written] == [
        "0.gradcam.png",
        "1.gradcam.png",
        "2.gradcam.png",
        "0-2.gradcam.png",
    ]
    pixels = np.stack([images.load(p, card.preprocessing) for p in inputs])
    batch = to_model_input(torch.from_numpy(pixels), card.preprocessing)
    heatmaps = grad_cam(model, target_layer(model, card.architecture), batch)
    for path, image, heatmap in zip(written, pixels, heatmaps, strict=True):
        with Image.open(path) as png:
            assert png.mode == "RGB" and png.size == (96, 96)  # 8x8 enlarged 12x
            shown = np.asarray(png)[::12, ::12]
        assert np.array_equal(shown, overlay(image, heatmap))
    assert Image.open(io.BytesIO(written[3].read_bytes())).size == (96, 96)
