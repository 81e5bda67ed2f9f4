"""The plain-torch loop: schedules, optimizer groups, one epoch, stats, RNG state, best model."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pomona.models.zoo import build_model, freeze_backbone
from pomona.train.config import ScheduleConfig, TrainConfig
from pomona.train.loop import (
    BestSinceCheckpoint,
    EpochStats,
    build_optimizer,
    build_scheduler,
    evaluate,
    keep_first,
    recalibrate_batchnorm,
    rng_state,
    seed_everything,
    set_rng_state,
    train_one_epoch,
)


def _config(**values: Any) -> TrainConfig:
    return TrainConfig(data="d", out="o", **values)


def _lrs(schedule: ScheduleConfig, epochs: int, steps_per_epoch: int, steps: int) -> list[float]:
    """Learning rate used by each of ``steps`` optimizer steps, base rate 1."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, schedule, epochs, steps_per_epoch)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_linear_warmup_then_constant() -> None:
    lrs = _lrs(ScheduleConfig(name="constant", warmup_epochs=1), 3, 4, 6)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_step_schedule_decays_every_step_epochs() -> None:
    lrs = _lrs(ScheduleConfig(name="step", step_epochs=2, gamma=0.1), 6, 3, 18)
    assert lrs == pytest.approx([1.0] * 6 + [0.1] * 6 + [0.01] * 6)


def test_cosine_reaches_min_ratio_at_the_end_and_stays_there() -> None:
    schedule = ScheduleConfig(name="cosine", min_lr_ratio=0.1)
    lrs = _lrs(schedule, epochs=2, steps_per_epoch=5, steps=13)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lrs[10:] == pytest.approx([0.1] * 3)  # after the last planned step, and past it
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_cosine_starts_after_warmup() -> None:
    lrs = _lrs(ScheduleConfig(name="cosine", warmup_epochs=1), 3, 4, 13)
    first_decay = 0.5 * (1 + math.cos(math.pi / 8))  # step 1 of the 8 after warmup
    assert lrs[:6] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, first_decay])
    assert lrs[12] == pytest.approx(0.0)


def test_optimizer_groups_scale_the_backbone_and_spare_biases_from_decay() -> None:
    model = build_model("simple_cnn", 3, 1)
    cfg = _config(
        learning_rate=0.2,
        weight_decay=1e-3,
        momentum=0.8,
        nesterov=True,
        model={"backbone_lr_scale": 0.1},
    )
    optimizer = build_optimizer(model, "simple_cnn", cfg)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(0.02)
    assert groups["head"]["lr"] == pytest.approx(0.2)
    assert groups["head"]["params"] == [model.fc.weight]
    assert groups["head_no_decay"]["params"] == [model.fc.bias]
    assert groups["backbone"]["weight_decay"] == 1e-3
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert all(g["momentum"] == 0.8 and g["nesterov"] for g in optimizer.param_groups)
    grouped = sum(len(g["params"]) for g in optimizer.param_groups)
    assert grouped == len(list(model.parameters()))

    scheduler = build_scheduler(optimizer, ScheduleConfig(name="constant"), 1, 1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.02, 0.02, 0.2, 0.2])
    assert scheduler.get_last_lr() == pytest.approx([0.02, 0.02, 0.2, 0.2])


def test_frozen_parameters_are_left_out() -> None:
    model = build_model("simple_cnn", 3, 1)
    freeze_backbone(model, "simple_cnn")
    optimizer = build_optimizer(model, "simple_cnn", _config())
    assert [g["name"] for g in optimizer.param_groups] == ["head", "head_no_decay"]


def _separable_batches(count: int, batch: int) -> list[dict[str, torch.Tensor]]:
    """Class 0 images are dark, class 1 bright: linearly separable from the mean pixel."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        labels = torch.randint(0, 2, (batch,), generator=generator)
        images = torch.randn(batch, 1, 8, 8, generator=generator) * 0.5
        images += (labels.float() * 2 - 1).view(-1, 1, 1, 1)
        batches.append({"image": images, "label": labels})
    return batches


def test_train_one_epoch_learns_a_separable_problem() -> None:
    seed_everything(0)
    model = build_model("simple_cnn", 2, 1)
    cfg = _config(learning_rate=0.05, schedule={"name": "constant"})
    optimizer = build_optimizer(model, "simple_cnn", cfg)
    batches = _separable_batches(count=8, batch=16)
    epochs = 3
    scheduler = build_scheduler(optimizer, cfg.schedule, epochs, len(batches))
    loss_fn = nn.CrossEntropyLoss()
    before = evaluate(model, batches, loss_fn, "cpu")
    steps: list[int] = []
    for _ in range(epochs):
        stats = train_one_epoch(
            model, batches, optimizer, scheduler, loss_fn, "cpu", on_step=steps.append
        )
        assert stats.count == 8 * 16
    after = evaluate(model, batches, loss_fn, "cpu")
    assert steps == list(range(1, 9)) * epochs
    assert scheduler.last_epoch == epochs * len(batches)
    assert after.loss < before.loss / 2
    assert after.accuracy == 1.0
    assert not model.training


def test_epoch_stats_math_and_tensor_round_trip() -> None:
    stats = EpochStats(loss_sum=3.0, correct=2, count=4) + EpochStats(1.0, 4, 4)
    assert stats == EpochStats(4.0, 6, 8)
    assert (stats.loss, stats.accuracy, stats.error) == pytest.approx((0.5, 0.75, 0.25))
    tensor = stats.to_tensor()
    assert tensor.dtype == torch.float64
    assert EpochStats.from_tensor(tensor + stats.to_tensor()) == EpochStats(8.0, 12, 16)
    assert math.isnan(EpochStats().loss) and math.isnan(EpochStats().accuracy)


def _draw() -> tuple[float, float, float, list[float]]:
    return (
        random.random(),
        float(np.random.rand()),
        float(np.random.randn()),
        torch.rand(3).tolist(),
    )


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    seed_everything(123)
    random.gauss(0, 1)  # leaves Python's cached Gaussian set, part of the state
    np.random.randn()  # leaves NumPy's cached Gaussian set
    torch.save({"rng": rng_state()}, tmp_path / "ckpt.pt")
    expected = _draw()
    _draw()
    set_rng_state(torch.load(tmp_path / "ckpt.pt", weights_only=True)["rng"])
    assert _draw() == expected


def test_seed_everything_is_reproducible() -> None:
    seed_everything(7)
    first = _draw()
    seed_everything(7)
    assert _draw() == first


def test_the_best_epoch_between_checkpoints_is_kept_for_the_next_one() -> None:
    model = nn.Linear(2, 2)
    best = BestSinceCheckpoint()
    # checkpoint.frequency 3: epochs 3 and 6 are checkpointed.
    with torch.no_grad():
        model.weight.fill_(1.0)
    best.update(model, {"epoch": 1, "val_error": 0.5}, checkpointed=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    best.update(model, {"epoch": 2, "val_error": 0.2}, checkpointed=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    best.update(model, {"epoch": 3, "val_error": 0.4}, checkpointed=True)
    taken = best.take()
    assert taken is not None
    kept, metrics = taken
    assert metrics["epoch"] == 2
    assert torch.equal(kept.weight, torch.full((2, 2), 2.0))  # a copy, not the live model
    assert best.take() is None  # written once

    best.update(model, {"epoch": 4, "val_error": 0.3}, checkpointed=False)  # not the best
    best.update(model, {"epoch": 5, "val_error": 0.1}, checkpointed=False)
    best.update(model, {"epoch": 6, "val_error": 0.05}, checkpointed=True)  # newer and better
    assert best.take() is None


def _image_batches(sizes: list[int], shift: float) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randn(n, 1, 8, 8, generator=generator) * 2 + shift,
            "label": torch.zeros(n, dtype=torch.int64),
        }
        for n in sizes
    ]


def test_keep_first_passes_every_batch_and_keeps_the_first_images() -> None:
    batches = _image_batches([4, 4, 4, 4], shift=0)
    kept: list[dict[str, torch.Tensor]] = []
    assert list(keep_first(batches, 6, kept)) == batches
    assert kept == batches[:2]  # the batch that crosses the limit is kept whole
    none: list[dict[str, torch.Tensor]] = []
    assert len(list(keep_first(batches, 0, none))) == 4 and none == []


def test_recalibrated_batchnorm_statistics_describe_the_current_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
    norm = model[1]
    # Running averages left behind by inputs around 5 with momentum 0.1.
    with torch.no_grad():
        for batch in _image_batches([16] * 5, shift=5.0):
            model(batch["image"])
    model.eval()
    batches = _image_batches([16, 16, 8], shift=-1.0)
    assert recalibrate_batchnorm(model, batches, "cpu")
    assert not model.training and norm.momentum == 0.1
    with torch.no_grad():
        features = [model[0](b["image"]) for b in batches]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(dim=0)
    variances = torch.stack([f.var(dim=(0, 2, 3)) for f in features]).mean(dim=0)
    torch.testing.assert_close(norm.running_mean, means)
    torch.testing.assert_close(norm.running_var, variances)
    assert int(norm.num_batches_tracked) == 3


def test_recalibration_skips_a_model_without_batchnorm() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    assert not recalibrate_batchnorm(model, _image_batches([4], shift=0), "cpu")
