"""The training configuration: one validated pydantic model, read from YAML, ``--set`` and flags.

Every value is checked when the config is built (on the driver), so a typo or an impossible
combination fails before any worker starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from pomona.config import StrictModel
from pomona.data.augment import Augmentation
from pomona.errors import CheckpointError
from pomona.models.weights import TORCHVISION_PREFIX, HeadChoice, resolve_torchvision_weights
from pomona.models.zoo import ARCHITECTURES


class ModelConfig(StrictModel):
    """Which network to train and where its starting weights come from.

    Attributes:
        architecture: key of :data:`pomona.models.zoo.ARCHITECTURES` (``pomona models list``).
        weights: pretrained weights to fine-tune from: a ``.safetensors``/``.pt``/``.pth`` file,
            a pomona model directory, a registry reference, or ``torchvision:<Weights>.<member>``
            read from the local torch hub cache; ``None`` trains from scratch.
        head: what happens to the weights' classifier head: ``auto`` keeps it only when the
            weights' model card records exactly the dataset's classes, in order (continuing
            training) and starts a new one otherwise (other classes, or no card); ``new`` and
            ``keep`` force either.
        freeze_backbone: train only the classifier head (linear probing).
        backbone_lr_scale: the backbone's learning rate is ``learning_rate`` times this, in
            (0, 1]; below 1 it changes pretrained features more gently than the new head.
    """

    architecture: str = "simple_cnn"
    weights: str | None = None
    head: HeadChoice = "auto"
    freeze_backbone: bool = False
    backbone_lr_scale: float = Field(1.0, gt=0, le=1)

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, architecture: str) -> str:
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}"
            )
        return architecture

    @field_validator("weights")
    @classmethod
    def _known_torchvision_weights(cls, weights: str | None) -> str | None:
        # Only the name is checked here; the trainer reads the file on the driver.
        if weights is not None and weights.startswith(TORCHVISION_PREFIX):
            try:
                resolve_torchvision_weights(weights)
            except CheckpointError as error:
                raise ValueError(str(error)) from None
        return weights

    @model_validator(mode="after")
    def _head_needs_weights(self) -> ModelConfig:
        if self.head == "keep" and self.weights is None:
            raise ValueError("model.head keep needs model.weights: there is no head to keep")
        return self


class ScheduleConfig(StrictModel):
    """Learning-rate schedule, applied per optimizer step.

    Attributes:
        name: ``constant``, ``step`` (multiply by ``gamma`` every ``step_epochs`` epochs after
            warmup) or ``cosine`` (cosine decay, after warmup, to ``min_lr_ratio`` times the base
            rate at the end of the last epoch).
        warmup_epochs: epochs (fractions allowed) of linear warmup from near zero before the
            schedule starts; 0 disables warmup.
        step_epochs: epochs between two decays of the ``step`` schedule.
        gamma: decay factor of the ``step`` schedule, in (0, 1].
        min_lr_ratio: final learning rate of ``cosine`` as a fraction of the base, in [0, 1).
    """

    name: Literal["constant", "step", "cosine"] = "cosine"
    warmup_epochs: NonNegativeFloat = 0
    step_epochs: PositiveInt = 30
    gamma: float = Field(0.1, gt=0, le=1)
    min_lr_ratio: float = Field(0.0, ge=0, lt=1)


class CheckpointConfig(StrictModel):
    """How often training state is checkpointed and how many checkpoints are kept.

    Attributes:
        frequency: save a checkpoint every this many epochs (the last epoch is always saved).
            The best epoch's model is published even when it falls between two checkpoints:
            it is kept in memory and written with the next one.
        keep: number of most recent checkpoints kept on disk.
    """

    frequency: PositiveInt = 1
    keep: PositiveInt = 2


class TrainConfig(StrictModel):
    """Everything ``pomona train`` needs to reproduce a run.

    Attributes:
        data: directory of an ingested dataset (holds ``manifest.json``).
        out: run directory for checkpoints, metrics and the best model.
        model: architecture and starting weights.
        epochs: passes over the training split.
        batch_size: global batch size, split evenly across workers.
        learning_rate: base SGD learning rate (the head's; see ``model.backbone_lr_scale``).
        momentum: SGD momentum, in [0, 1).
        nesterov: use Nesterov momentum (needs ``momentum`` > 0).
        weight_decay: L2 penalty on weights; biases and normalisation parameters get none.
        schedule: learning-rate schedule.
        label_smoothing: cross-entropy label smoothing, in [0, 1).
        precise_bn_samples: before each validation, every BatchNorm layer's running statistics
            are recomputed with the epoch's final weights over this many training images (the
            epoch's first batches, per worker, averaged over workers); 0 keeps PyTorch's running
            averages. Costs a forward pass over these images per epoch.
        seed: seeds Python, NumPy and torch on every worker, and the data shuffle.
        num_workers: Ray Train workers (data-parallel processes).
        use_gpu: give each worker one GPU.
        threads_per_worker: torch intra-op threads per worker; ``None`` shares the cluster's
            cores evenly between the workers (at least 1).
        cpus_per_worker: logical CPUs each worker reserves in Ray; ``None`` leaves one CPU of the
            cluster free for Ray Data and shares the rest, at most 1 per worker.
        checkpoint: checkpoint frequency and retention.
        augment: training-time augmentation.
        max_failures: times Ray Train restarts the run from its last checkpoint after a
            worker failure before giving up.
    """

    data: str
    out: str
    model: ModelConfig = Field(default_factory=ModelConfig)
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    learning_rate: PositiveFloat = 0.05
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 5e-4
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    precise_bn_samples: NonNegativeInt = 512
    seed: int = 0
    num_workers: PositiveInt = 2
    use_gpu: bool = False
    threads_per_worker: PositiveInt | None = None
    cpus_per_worker: PositiveFloat | None = None
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    augment: Augmentation = Field(default_factory=Augmentation)
    max_failures: NonNegativeInt = 2

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.batch_size < self.num_workers:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be >= num_workers ({self.num_workers}): "
                "the global batch is split across workers and each needs at least one sample"
            )
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self

    @property
    def gpus(self) -> int:
        """GPUs a run reserves at once: one per worker with ``use_gpu``, else none."""
        return self.num_workers if self.use_gpu else 0

    @property
    def worker_batch_size(self) -> int:
        """Per-worker batch size, ``batch_size // num_workers`` (any remainder is dropped)."""
        return self.batch_size // self.num_workers
