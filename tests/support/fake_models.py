"""Tiny real model directories (simple_cnn, two classes) for registry and resolver tests."""

from __future__ import annotations

from pathlib import Path

import torch

from pomona.data.manifest import Preprocessing
from pomona.models import build_model, save_model


def make_model_dir(path: Path, seed: int = 0, metrics: dict[str, float] | None = None) -> Path:
    """A valid model directory whose weights depend on ``seed`` (so checksums differ); its card
    records ``metrics`` (default: a val_error that depends on ``seed``)."""
    torch.manual_seed(seed)
    save_model(
        path,
        build_model("simple_cnn", 2, 1),
        architecture="simple_cnn",
        classes=["cat", "dog"],
        preprocessing=Preprocessing(height=8, width=8, channels=1),
        metrics=metrics if metrics is not None else {"val_error": 0.1 + seed / 100},
    )
    return path


def flip_byte(path: Path, offset: int = -1) -> None:
    """Invert one byte of ``path`` in place (the last one by default): real bit rot."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
