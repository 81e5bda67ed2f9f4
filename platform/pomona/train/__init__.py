"""Training: the validated :class:`TrainConfig` and the plain-torch loop it drives.

The loop (:mod:`pomona.train.loop`) imports no Ray; Ray Train wiring lives in its own module.
"""

from pomona.train.config import (
    CheckpointConfig,
    ModelConfig,
    ScheduleConfig,
    TrainConfig,
)
from pomona.train.loop import (
    SCHEDULES,
    EpochStats,
    build_optimizer,
    build_scheduler,
    evaluate,
    rng_state,
    seed_everything,
    set_rng_state,
    train_one_epoch,
)

__all__ = [
    "SCHEDULES",
    "CheckpointConfig",
    "EpochStats",
    "ModelConfig",
    "ScheduleConfig",
    "TrainConfig",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "train_one_epoch",
]
