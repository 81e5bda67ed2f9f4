"""Model directories with a fake weights file: enough for the registry and resolver, no torch."""

from __future__ import annotations

from pathlib import Path

from pomona.data.manifest import Preprocessing
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, ModelCard
from pomona.storage import sha256_bytes


def make_model_dir(path: Path, seed: int = 0) -> Path:
    """A valid model directory: 16 seed-dependent weight bytes and a card that matches them."""
    path.mkdir(parents=True)
    weights = bytes((seed + i) % 256 for i in range(16))
    (path / WEIGHTS_FILE).write_bytes(weights)
    card = ModelCard(
        architecture="simple_cnn",
        classes=["cat", "dog"],
        preprocessing=Preprocessing(height=32, width=32),
        weights_sha256=sha256_bytes(weights),
        metrics={"val_error": 0.1 + seed / 100},
    )
    (path / CARD_FILE).write_text(card.model_dump_json())
    return path
