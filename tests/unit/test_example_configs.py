"""The example configs shipped in configs/ validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

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


def _settings(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf setting of ``model``, as dotted keys."""
    keys = set()
    for name, field in model.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            keys |= _settings(nested, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _written(mapping: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in mapping.items():
        if isinstance(value, dict):
            keys |= _written(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_the_train_example_shows_every_setting() -> None:
    # The README points readers to it for the full list.
    written = _written(yaml.safe_load((CONFIGS / "train-digits.yaml").read_text()))
    assert written == _settings(TrainConfig)
