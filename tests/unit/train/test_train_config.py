"""TrainConfig validates every value when it is built, with messages naming the choices."""

from __future__ import annotations

from typing import Any

import pytest

from pomona.config import load_config, validate
from pomona.errors import ConfigError
from pomona.models.zoo import ARCHITECTURES
from pomona.train.config import TrainConfig

REQUIRED = {"data": "datasets/digits", "out": "runs/digits"}


def _config(**values: Any) -> TrainConfig:
    return validate(TrainConfig, {**REQUIRED, **values}, "test config")


def test_defaults() -> None:
    cfg = _config()
    assert cfg.model.architecture == "simple_cnn"
    assert cfg.schedule.name == "cosine"
    assert (cfg.epochs, cfg.batch_size, cfg.num_workers) == (10, 64, 2)
    assert cfg.worker_batch_size == 32


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(ConfigError) as raised:
        _config(model={"architecture": "vgg99"})
    message = str(raised.value)
    assert "model.architecture" in message
    for name in ARCHITECTURES:
        assert name in message


def test_batch_size_must_cover_the_workers() -> None:
    with pytest.raises(ConfigError, match=r"batch_size \(2\) must be >= num_workers \(4\)"):
        _config(batch_size=2, num_workers=4)


@pytest.mark.parametrize(
    "values",
    [
        {"model": {"backbone_lr_scale": 0}},
        {"model": {"backbone_lr_scale": 1.5}},
        {"momentum": 1.0},
        {"nesterov": True, "momentum": 0},
        {"label_smoothing": 1.0},
        {"schedule": {"name": "linear"}},
        {"schedule": {"gamma": 0}},
        {"schedule": {"min_lr_ratio": 1.0}},
        {"epochs": 0},
        {"learning_rate": 0},
        {"weight_decay": -1e-4},
        {"augment": {"random_crop_padding": -1}},
        {"checkpoint": {"keep": 0}},
        {"threads_per_worker": 0},
        {"max_failures": -1},
        {"learning_rte": 0.1},
    ],
)
def test_invalid_values_are_rejected(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        _config(**values)


def test_torchvision_weight_names_are_checked_up_front() -> None:
    ok = _config(
        model={"architecture": "resnet18", "weights": "torchvision:ResNet18_Weights.DEFAULT"}
    )
    assert ok.model.weights == "torchvision:ResNet18_Weights.DEFAULT"
    with pytest.raises(ConfigError, match="unknown torchvision weights"):
        _config(model={"weights": "torchvision:ResNet18_Weights.NOPE"})
    # Other sources are only read on the worker, so a path that is absent here is accepted.
    assert _config(model={"weights": "/elsewhere/model.pt"}).model.weights == "/elsewhere/model.pt"


def test_overrides_reach_nested_fields() -> None:
    cfg = load_config(
        TrainConfig,
        overrides=["schedule.name=step", "model.backbone_lr_scale=0.1"],
        flags=REQUIRED,
    )
    assert cfg.schedule.name == "step"
    assert cfg.model.backbone_lr_scale == 0.1


def test_auto_cpus_per_worker_leaves_one_cpu_for_data() -> None:
    from pomona.train.trainer import auto_cpus_per_worker

    assert auto_cpus_per_worker(2, 2) == 0.5
    assert auto_cpus_per_worker(2, 1) == 1.0
    assert auto_cpus_per_worker(16, 4) == 1.0
    assert auto_cpus_per_worker(1, 1) == 0.5


def test_default_threads_share_the_cores() -> None:
    from pomona.train.trainer import default_threads

    assert default_threads(2, 1) == 2
    assert default_threads(2, 2) == 1
    assert default_threads(2, 4) == 1
    assert default_threads(16, 4) == 4
