"""The sweep configuration: a base training config, a search space and how to search it.

```yaml
out: sweeps/digits            # the sweep directory
train:                        # the same keys as `pomona train` (its `out` is set per trial)
  data: datasets/digits
  epochs: 4
  num_workers: 1
space:                        # any training setting, dotted for nested ones
  learning_rate: loguniform(0.001, 0.3)
  batch_size: choice(32, 64, 128)
trials: 6
scheduler: {name: asha, grace_period: 1, reduction_factor: 4}
```

Everything is checked before Ray starts, including every value (or both ends of every range) of
the space against the training config, so a typo or an impossible value is a one-line error.
A trial's config is the base with the trial's settings applied, validated again
(:func:`trial_config`): combinations that only fail together fail that trial alone.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pomona.config import StrictModel, flags_within, format_validation_error
from pomona.errors import ConfigError
from pomona.train.config import TrainConfig
from pomona.train.run_dir import METRIC_COLUMNS
from pomona.tune.space import Distribution, Grid, canonical_key, parse_distribution

#: Training settings a space may not vary: they say where a trial reads and writes.
FIXED_KEYS = ("data", "out")
#: Where, under the sweep directory, each trial's run directory is created.
TRIALS_DIR = "trials"


class SchedulerConfig(StrictModel):
    """When to stop trials.

    The defaults are Ray Tune's own ASHA defaults, and the best of those replayed on the
    recorded curves of a 12-trial sweep (``benchmarks/RESULTS.md``, section 4): a grace period of
    1 with a reduction factor of 4 reached the full search's best on every order of the trials,
    while 2 and 3 lost it on some orders; a grace period of 2 spent 60% or more of the epochs.

    Attributes:
        name: ``asha`` stops the worst trials at each rung (``grace_period`` epochs, then that
            times ``reduction_factor``, ... up to ``train.epochs``), freeing their CPUs for the
            next; ``fifo`` runs every trial to ``train.epochs``.
        grace_period: epochs every trial runs before ASHA may stop it.
        reduction_factor: ASHA keeps the best 1/reduction_factor of the trials at each rung.
    """

    name: Literal["asha", "fifo"] = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: float = Field(4.0, gt=1)


class SweepConfig(StrictModel):
    """Everything ``pomona sweep`` needs to run (and resume) a sweep.

    Attributes:
        out: the sweep directory (results, report, trials' run directories).
        train: the base training config; ``train.out`` is set per trial and may not be given.
        space: training setting (dotted key) -> distribution, written ``kind(args)``.
        trials: trials to sample; a ``grid`` multiplies this by its number of values.
        concurrent_trials: trials running at once; ``None`` fits as many as the cluster's CPUs
            allow with one CPU left for Ray Data, and at least two where each of their workers
            still gets a core (see :func:`pomona.tune.sweep.auto_concurrent_trials`).
        metric: the per-epoch metric that ranks trials (a column of ``metrics.csv``).
        mode: ``min`` or ``max`` of ``metric``.
        scheduler: ASHA or FIFO.
        searcher: ``random`` (Tune's random/grid search) or ``optuna`` (TPE; needs the
            ``optuna`` extra).
        seed: seeds the searcher, so the same config samples the same trials.
    """

    out: str
    train: TrainConfig
    space: dict[str, Distribution] = Field(min_length=1)
    trials: PositiveInt = 8
    concurrent_trials: PositiveInt | None = None
    metric: str = "val_error"
    mode: Literal["min", "max"] = "min"
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    searcher: Literal["random", "optuna"] = "random"
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _trial_out(cls, data: Any) -> Any:
        # Each trial's run directory lives in the sweep; a base `train.out` would be overwritten.
        if isinstance(data, Mapping) and isinstance(data.get("train"), Mapping):
            if "out" in data["train"]:
                raise ValueError("train.out is set per trial; give the sweep directory as `out`")
            out = data.get("out")
            data = {**data, "train": {**data["train"], "out": f"{out}/{TRIALS_DIR}"}}
        return data

    @field_validator("space", mode="before")
    @classmethod
    def _parse_space(cls, space: Any) -> Any:
        if not isinstance(space, Mapping):
            return space
        parsed: dict[str, Any] = {}
        for key, value in space.items():
            name = canonical_key(str(key))
            if name in parsed:
                raise ConfigError(f"{key!r} appears twice in the space (as {name!r})")
            parsed[name] = parse_distribution(value) if isinstance(value, str) else value
        return parsed

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRIC_COLUMNS:
            raise ValueError(
                f"unknown metric {metric!r}; choose one of {', '.join(METRIC_COLUMNS)}"
            )
        return metric

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> SweepConfig:
        flags = flags_within(info, "train")
        for key, distribution in self.space.items():
            _check_key(key)
            for value in distribution.examples():
                source = f"space {key}={value!r}"
                trial_config(self.train, {key: value}, self.train.out, source=source, flags=flags)
        if self.scheduler.name == "asha" and self.scheduler.grace_period > self.train.epochs:
            raise ValueError(
                f"scheduler.grace_period ({self.scheduler.grace_period}) exceeds train.epochs "
                f"({self.train.epochs}); ASHA could never stop a trial"
            )
        if self.searcher == "optuna" and importlib.util.find_spec("optuna") is None:
            raise ValueError("searcher 'optuna' needs Optuna: pip install 'pomona[optuna]'")
        if self.searcher == "optuna" and self.grid_keys:
            raise ValueError(f"the optuna searcher cannot run grid({', '.join(self.grid_keys)})")
        return self

    @property
    def grid_keys(self) -> list[str]:
        """Keys searched as a grid."""
        return [key for key, dist in self.space.items() if isinstance(dist, Grid)]

    @property
    def total_trials(self) -> int:
        """Trials the sweep runs: ``trials`` times the size of every grid."""
        sizes = [len(dist.values) for dist in self.space.values() if isinstance(dist, Grid)]
        return self.trials * math.prod(sizes)


def _check_key(key: str) -> None:
    """Raise ConfigError unless ``key`` names a training setting a trial may vary."""
    if key in FIXED_KEYS:
        raise ConfigError(f"the space cannot vary {key!r}: it is the same for every trial")
    if key.startswith("train."):
        # --set needs the prefix (the sweep's own settings sit beside ``train``); the space
        # holds training settings only.
        raise ConfigError(
            f"space key {key!r}: space keys are training settings already; write "
            f"{key.removeprefix('train.')!r}"
        )
    model: type[BaseModel] = TrainConfig
    *parents, leaf = key.split(".")
    for part in [*parents, leaf]:
        fields = model.model_fields
        if part not in fields:
            raise ConfigError(
                f"space key {key!r}: {part!r} is not a training setting; choose one of "
                f"{', '.join(fields)}"
            )
        if part != leaf:
            nested = fields[part].annotation
            if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                raise ConfigError(f"space key {key!r}: {part!r} has no nested settings")
            model = nested


def trial_config(
    base: TrainConfig,
    settings: Mapping[str, Any],
    out: str,
    *,
    source: str = "trial",
    flags: Mapping[str, str] | None = None,
) -> TrainConfig:
    """The base config with a trial's settings (dotted keys) and run directory, validated again
    (``flags`` names the base's settings in errors, as in
    :func:`pomona.config.format_validation_error`, unless the trial's settings replace them).

    Raises:
        ConfigError: the combination is invalid (e.g. ``batch_size`` below ``num_workers``).
    """
    data = base.model_dump()
    for key, value in {**settings, "out": out}.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        # One line, so a sweep's table and results.csv can show it next to the trial.
        given = {key: flag for key, flag in (flags or {}).items() if key not in settings}
        message = format_validation_error(error, source, given)
        raise ConfigError(message.replace(":\n  ", ": ", 1).replace("\n  ", "; ")) from None
