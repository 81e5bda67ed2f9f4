"""The one inference path: bytes or files, the card's preprocessing, batched forward, top-k."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pomona import inference
from pomona.data import images
from pomona.data.tensors import to_model_input
from pomona.errors import ConfigError
from pomona.inference import (
    Prediction,
    decode,
    load_for_inference,
    predict_images,
    predict_pixels,
    read_images,
)
from pomona.models import load_model
from pomona.models.card import ModelCard


def expected_probabilities(model_dir: Path, paths: list[Path]) -> np.ndarray:
    model, card = load_model(model_dir)
    pixels = np.stack([images.load(p, card.preprocessing) for p in paths])
    with torch.no_grad():
        logits = model(to_model_input(torch.from_numpy(pixels), card.preprocessing))
    return torch.softmax(logits, dim=1).numpy()


def predict_files(model: nn.Module, card: ModelCard, paths: list[Path], k: int) -> list[Prediction]:
    predicted = predict_images(model, card, read_images(paths, card.preprocessing), k)
    assert [path for path, _ in predicted] == paths
    return [prediction for _, prediction in predicted]


def test_predictions_use_the_training_preprocessing(
    tiny_model_dir: Path, image_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two files per batch, so batching across chunks is exercised too.
    monkeypatch.setattr(inference, "IMAGES_PER_BATCH", 2)
    model, card = load_model(tiny_model_dir)
    predictions = predict_files(model, card, image_files, 2)
    expected = expected_probabilities(tiny_model_dir, image_files)
    classes = card.classes
    assert len(predictions) == len(image_files)
    for prediction, probs in zip(predictions, expected, strict=True):
        order = np.argsort(-probs)[:2]
        assert prediction.labels == tuple(classes[i] for i in order)
        assert prediction.scores == pytest.approx(probs[order].tolist(), abs=1e-6)
        assert prediction.label == classes[probs.argmax()]
        assert prediction.score == pytest.approx(probs.max(), abs=1e-6)


def test_a_model_loaded_to_answer_has_its_batch_norms_folded(
    tiny_model_dir: Path, image_files: list[Path]
) -> None:
    model, card = load_for_inference(tiny_model_dir)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert card == load_model(tiny_model_dir)[1]
    pixels = np.stack([images.load(p, card.preprocessing) for p in image_files])
    np.testing.assert_allclose(
        inference.probabilities(model, card.preprocessing, pixels),
        expected_probabilities(tiny_model_dir, image_files),
        atol=1e-6,
    )


def test_bytes_predict_like_the_files_they_came_from(
    tiny_model_dir: Path, image_files: list[Path]
) -> None:
    model, card = load_model(tiny_model_dir)
    pixels = np.stack([decode(p.read_bytes(), card.preprocessing) for p in image_files])
    assert predict_pixels(model, card, pixels, 3) == predict_files(model, card, image_files, 3)


def test_byte_limits_apply_to_bytes(tiny_model_dir: Path, image_files: list[Path]) -> None:
    _, card = load_model(tiny_model_dir)
    data = image_files[0].read_bytes()  # 20x14 = 280 pixels
    with pytest.raises(images.ImageRejected, match="too large: 20x14 = 280 pixels > limit 100"):
        decode(data, card.preprocessing, max_pixels=100)
    with pytest.raises(images.ImageRejected, match="corrupt or truncated"):
        decode(data[: len(data) // 2], card.preprocessing)
    with pytest.raises(images.ImageRejected, match="empty file"):
        decode(b"", card.preprocessing)


def test_top_k_is_capped_and_validated(tiny_model_dir: Path, image_files: list[Path]) -> None:
    model, card = load_model(tiny_model_dir)
    (prediction,) = predict_files(model, card, image_files[:1], 10)
    assert sorted(prediction.labels) == sorted(card.classes)
    assert sum(prediction.scores) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="top-k must be at least 1, got 0"):
        predict_files(model, card, image_files, 0)


def test_bad_files_are_named(tiny_model_dir: Path, image_files: list[Path], tmp_path: Path) -> None:
    model, card = load_model(tiny_model_dir)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(images.ImageRejected, match=f"^{re.escape(str(broken))}: "):
        predict_files(model, card, [*image_files, broken], 1)
