"""The training loop in plain torch: seeding, optimizer, schedule, one epoch, evaluation.

Nothing here knows about Ray; the trainer wiring feeds these functions batches and all-reduces
the :class:`EpochStats` they return, so the loop is tested on its own with tiny tensors.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from pomona.models.zoo import split_parameters, unwrap
from pomona.train.config import ScheduleConfig, TrainConfig

Batch = Mapping[str, Tensor]
StepCallback = Callable[[int], None]
# schedule(step, total_steps, steps_per_epoch, config) -> lr factor. Steps count from the end
# of warmup and total_steps excludes it, so every schedule starts at its own step 0.
Schedule = Callable[[int, int, int, ScheduleConfig], float]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Capture every random generator's state for a checkpoint.

    The result holds only tensors and plain Python values, so ``torch.save`` stores it and
    ``torch.load(..., weights_only=True)`` reads it back.
    """
    version, mt_state, gauss_next = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(mt_state), gauss_next],
        "numpy": [torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore generator states captured by :func:`rng_state`.

    CUDA states are restored for the devices present, so a GPU checkpoint resumes on a machine
    with fewer GPUs, or none.
    """
    version, mt_state, gauss_next = state["python"]
    random.setstate((version, tuple(mt_state), gauss_next))
    np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        ("MT19937", np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(state.get("cuda", [])[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def build_optimizer(model: nn.Module, architecture: str, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with separate backbone and head learning rates.

    The backbone's rate is ``learning_rate * model.backbone_lr_scale``, the head's
    ``learning_rate``. Frozen parameters are left out. One-dimensional parameters (biases and
    normalisation scales/shifts) get no weight decay: shrinking them towards zero only fights
    the normalisation, as in torchvision's ``--norm-weight-decay 0`` recipes. Groups are named
    ``backbone``, ``backbone_no_decay``, ``head`` and ``head_no_decay``; empty ones are omitted.
    """
    backbone, head = split_parameters(model, architecture)
    groups = []
    for name, parameters, lr in (
        ("backbone", backbone, cfg.learning_rate * cfg.model.backbone_lr_scale),
        ("head", head, cfg.learning_rate),
    ):
        trainable = [p for p in parameters if p.requires_grad]
        for suffix, selected, decay in (
            ("", [p for p in trainable if p.ndim > 1], cfg.weight_decay),
            ("_no_decay", [p for p in trainable if p.ndim <= 1], 0.0),
        ):
            if selected:
                groups.append(
                    {"name": name + suffix, "params": selected, "lr": lr, "weight_decay": decay}
                )
    return torch.optim.SGD(
        groups,
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


def _constant(step: int, total_steps: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    return 1.0


def _step(step: int, total_steps: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    return cfg.gamma ** (step // (cfg.step_epochs * steps_per_epoch))


def _cosine(step: int, total_steps: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    # Clamped because a streamed epoch can run a few more steps than estimated; past the end
    # the rate must stay at its minimum instead of climbing back up the cosine.
    progress = min(step / total_steps, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


SCHEDULES: dict[str, Schedule] = {"constant": _constant, "step": _step, "cosine": _cosine}


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, epochs: int, steps_per_epoch: int
) -> LambdaLR:
    """A per-step learning-rate schedule: linear warmup, then ``SCHEDULES[schedule.name]``.

    Call ``scheduler.step()`` after every ``optimizer.step()``. Warmup lasts
    ``round(warmup_epochs * steps_per_epoch)`` steps, rising linearly from ``1/warmup_steps``
    of the base rate to the full rate; the named schedule then runs over the remaining steps.

    Args:
        optimizer: its groups' ``lr`` are the base rates the schedule scales.
        schedule: which schedule and its parameters.
        epochs: epochs in the run.
        steps_per_epoch: optimizer steps per epoch on one worker.

    Raises:
        ValueError: ``epochs`` or ``steps_per_epoch`` is below 1.
    """
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(
            f"epochs and steps_per_epoch must be >= 1, got {epochs}, {steps_per_epoch}"
        )
    warmup_steps = round(schedule.warmup_epochs * steps_per_epoch)
    main_steps = max(epochs * steps_per_epoch - warmup_steps, 1)
    named = SCHEDULES[schedule.name]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return named(step - warmup_steps, main_steps, steps_per_epoch, schedule)

    return LambdaLR(optimizer, factor)


@dataclass
class EpochStats:
    """Sums over the samples of one epoch; add them (or all-reduce the tensor) across workers.

    Attributes:
        loss_sum: sum of per-sample losses.
        correct: samples whose top-1 prediction equals the label.
        count: samples seen.
    """

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0

    @property
    def loss(self) -> float:
        """Mean loss per sample (NaN when no sample was seen)."""
        return self.loss_sum / self.count if self.count else math.nan

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy (NaN when no sample was seen)."""
        return self.correct / self.count if self.count else math.nan

    @property
    def error(self) -> float:
        """Top-1 error rate, ``1 - accuracy``."""
        return 1.0 - self.accuracy

    def __add__(self, other: EpochStats) -> EpochStats:
        return EpochStats(
            self.loss_sum + other.loss_sum, self.correct + other.correct, self.count + other.count
        )

    def to_tensor(self, device: torch.device | str = "cpu") -> Tensor:
        """``[loss_sum, correct, count]`` as float64 on ``device``, ready for an all-reduce sum.

        float64 keeps integer counts exact up to 2**53.
        """
        return torch.tensor(
            [self.loss_sum, self.correct, self.count], dtype=torch.float64, device=device
        )

    @classmethod
    def from_tensor(cls, tensor: Tensor) -> EpochStats:
        """Inverse of :meth:`to_tensor`."""
        loss_sum, correct, count = tensor.tolist()
        return cls(loss_sum, round(correct), round(count))


class _Accumulator:
    """Sums loss and correct predictions on the device, so the loop never waits on a GPU sync."""

    def __init__(self, device: torch.device | str) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor) -> None:
        # loss_fn returns the batch mean, so scale back to a sum before pooling batches.
        self.loss_sum += loss.detach().double() * labels.shape[0]
        self.correct += (logits.argmax(dim=1) == labels).sum()
        self.count += labels.shape[0]

    def stats(self) -> EpochStats:
        return EpochStats(self.loss_sum.item(), int(self.correct.item()), self.count)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device | str,
    on_step: StepCallback | None = None,
) -> EpochStats:
    """Train ``model`` for one pass over ``batches``, stepping the scheduler after every step.

    Args:
        model: in train mode for the pass (set here).
        batches: dicts with ``"image"`` (float, NCHW) and ``"label"`` (int64) tensors.
        optimizer: updates ``model``'s parameters.
        scheduler: a per-step schedule, e.g. from :func:`build_scheduler`.
        loss_fn: returns the mean loss of a batch, e.g. ``nn.CrossEntropyLoss()``.
        device: where the model lives; batches are moved there.
        on_step: called with the number of steps done after each step (progress reporting).

    Returns:
        Loss and accuracy of this worker's samples, measured during training.
    """
    model.train()
    totals = _Accumulator(device)
    for step, batch in enumerate(batches, start=1):
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        logits = model(images)
        loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        totals.add(loss, logits, labels)
        if on_step is not None:
            on_step(step)
    return totals.stats()


def keep_first(batches: Iterable[Batch], samples: int, kept: list[Batch]) -> Iterator[Batch]:
    """Yield ``batches`` unchanged, appending the first ones, up to ``samples`` images, to ``kept``.

    Lets :func:`recalibrate_batchnorm` reuse training batches the epoch has already loaded.
    """
    held = 0
    for batch in batches:
        if held < samples:
            kept.append(batch)
            held += len(batch["label"])
        yield batch


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[Batch], device: torch.device | str
) -> bool:
    """Replace every BatchNorm layer's running statistics with their mean over ``batches``,
    computed with the model's current weights ("precise BatchNorm").

    During training the running statistics average the last few dozen batches, each seen by
    different weights; while the weights move fast (a high learning rate, the first epochs) they
    describe none of them, and the eval-mode error can be far above the training error (digits,
    simple_cnn, learning rate 0.3: 0.32 against 0.05 after epoch 3; 0.05 recalibrated). Validation
    and the published model then use statistics of the weights they evaluate.

    Args:
        model: the bare network (not a ``DistributedDataParallel`` wrapper, whose forward would
            broadcast rank 0's statistics); its train/eval mode is restored.
        batches: training batches, as :func:`train_one_epoch` takes them.
        device: where the model lives.

    Returns:
        Whether the model has BatchNorm layers (nothing is run when it has none).
    """
    norms = batchnorm_layers(model)
    if not norms:
        return False
    momenta = [norm.momentum for norm in norms]
    training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch["image"].to(device, non_blocking=True))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(training)
    return True


def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device | str,
    on_step: StepCallback | None = None,
) -> EpochStats:
    """Measure ``model`` on ``batches`` in eval mode without gradients.

    Args:
        model: switched to eval mode here.
        batches: dicts with ``"image"`` (float, NCHW) and ``"label"`` (int64) tensors.
        loss_fn: returns the mean loss of a batch.
        device: where the model lives; batches are moved there.
        on_step: called with the number of batches done after each batch.

    Returns:
        Loss and accuracy of this worker's samples.
    """
    model.eval()
    totals = _Accumulator(device)
    with torch.no_grad():
        for step, batch in enumerate(batches, start=1):
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            logits = model(images)
            totals.add(loss_fn(logits, labels), logits, labels)
            if on_step is not None:
                on_step(step)
    return totals.stats()


class BestSinceCheckpoint:
    """The best model by validation error among the epochs since the last checkpoint.

    Checkpoints are written every ``checkpoint.frequency`` epochs, so the best epoch may fall
    between two of them. Its model is copied to the CPU here and written with the next
    checkpoint, so the run publishes its best epoch whatever the frequency. A copy exists only
    while the best epoch so far has not been checkpointed.
    """

    def __init__(self) -> None:
        self.best_error = math.inf
        self._pending: tuple[nn.Module, dict[str, float]] | None = None

    def update(self, model: nn.Module, metrics: Mapping[str, float], *, checkpointed: bool) -> None:
        """Record an epoch; copy ``model`` if it is the best so far and not ``checkpointed``."""
        if metrics["val_error"] >= self.best_error:
            return
        self.best_error = metrics["val_error"]
        # A checkpointed best publishes itself; an older copy can no longer win.
        self._pending = None if checkpointed else (_cpu_copy(model), dict(metrics))

    def take(self) -> tuple[nn.Module, dict[str, float]] | None:
        """The best uncheckpointed model and its metrics, once (None if there is none)."""
        pending, self._pending = self._pending, None
        return pending


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(unwrap(model)).to("cpu")
