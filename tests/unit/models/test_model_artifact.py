"""Model directories: exact round trip, checksum verification, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pomona.data.manifest import Preprocessing
from pomona.errors import CheckpointError, ModelNotFoundError
from pomona.models.artifact import load_model, read_card, save_model
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.models.zoo import build_model
from pomona.storage import sha256_file

PREPROCESSING = Preprocessing(height=12, width=12, channels=1)
CLASSES = ["cat", "dog", "eel"]


def _trained_model() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("simple_cnn", len(CLASSES), 1)
    model.train()
    model(torch.randn(8, 1, 12, 12))  # moves BatchNorm running stats off their defaults
    return model.eval()


def test_save_and_load_give_identical_weights_and_outputs(tmp_path: Path) -> None:
    model = _trained_model()
    card = save_model(
        tmp_path / "run" / "best",
        nn.DataParallel(model),  # a wrapped model must save without the "module." prefix
        architecture="simple_cnn",
        classes=CLASSES,
        preprocessing=PREPROCESSING,
        metrics={"val_error": 0.25},
        training={"epochs": 2},
        dataset_sha256="0" * 64,
    )
    directory = tmp_path / "run" / "best"
    assert card.weights_sha256 == sha256_file(directory / WEIGHTS_FILE)
    assert read_card(directory) == card

    loaded, loaded_card = load_model(directory)
    assert not loaded.training
    assert loaded_card.classes == CLASSES and loaded_card.metrics == {"val_error": 0.25}
    saved, restored = model.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[key], restored[key]) for key in saved)
    # Loaded for inference in the channels-last layout, whose convolutions sum in another
    # order: the same outputs up to float rounding.
    weight = loaded.features[1][0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    images = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    card = save_model(
        tmp_path,
        _trained_model(),
        architecture="simple_cnn",
        classes=CLASSES,
        preprocessing=PREPROCESSING,
    )
    weights = tmp_path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as raised:
        load_model(tmp_path)
    assert card.weights_sha256 in str(raised.value)
    assert sha256_file(weights) in str(raised.value)


def test_missing_and_invalid_cards(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"model\.json is missing"):
        load_model(tmp_path)
    (tmp_path / CARD_FILE).write_text('{"architecture": "simple_cnn"}')
    with pytest.raises(CheckpointError, match="classes"):
        read_card(tmp_path)


def test_head_size_must_match_classes(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="3 outputs but 2 classes"):
        save_model(
            tmp_path,
            _trained_model(),
            architecture="simple_cnn",
            classes=["a", "b"],
            preprocessing=PREPROCESSING,
        )
    assert not (tmp_path / WEIGHTS_FILE).exists()
