"""The example configs shipped in configs/ validate."""

from __future__ import annotations

from pathlib import Path

from pomona.config import load_config
from pomona.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_train_digits_example_validates_and_overrides_apply() -> None:
    config = load_config(
        TrainConfig, CONFIGS / "train-digits.yaml", ["epochs=2", "model.freeze_backbone=true"]
    )
    assert config.epochs == 2
    assert config.model.freeze_backbone is True
    assert config.augment.random_crop_padding == 2
