"""The search space of a sweep: ``key=kind(args)`` strings parsed into validated distributions.

One syntax serves ``--space`` flags and YAML (``space: {learning_rate: "loguniform(1e-3, 0.3)"}``):

```
choice(a, b, ...)      one of the values, sampled uniformly
grid(a, b, ...)        every value, each in its own trials (a grid search)
uniform(low, high)     a float sampled uniformly from [low, high]
loguniform(low, high)  a float whose logarithm is uniform (learning rates, weight decay)
randint(low, high)     an integer in [low, high] (both included)
```

Values are YAML scalars (``0.1``, ``1e-3``, ``true``, ``cosine``). Keys are training settings,
dotted for nested ones (``schedule.name``); ``lr`` and ``workers`` are accepted as the same
short names ``pomona train`` has flags for. Nothing here imports Ray: :meth:`Distribution.to_tune`
imports ``ray.tune`` only when the sweep is built.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from pomona.config import StrictModel
from pomona.errors import ConfigError

#: Short names accepted in a space, as ``pomona train`` spells its flags.
ALIASES = {"lr": "learning_rate", "workers": "num_workers", "model": "model.architecture"}

_CALL = re.compile(r"^\s*(?P<kind>[a-z]+)\s*\((?P<args>.*)\)\s*$", re.DOTALL)

Scalar = bool | int | float | str


class _Values(StrictModel):
    values: list[Scalar] = Field(min_length=1)

    def examples(self) -> list[Scalar]:
        """Every value a trial can get (checked against the training config up front)."""
        return list(self.values)


class Choice(_Values):
    """One of ``values``, sampled uniformly per trial."""

    kind: Literal["choice"] = "choice"

    def to_tune(self) -> Any:
        """The matching ``ray.tune`` search-space object."""
        from ray import tune

        return tune.choice(self.values)


class Grid(_Values):
    """Every one of ``values``: each trial count is multiplied by ``len(values)``."""

    kind: Literal["grid"] = "grid"

    def to_tune(self) -> Any:
        """The matching ``ray.tune`` search-space object."""
        from ray import tune

        return tune.grid_search(self.values)


class _Range(StrictModel):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self

    def examples(self) -> list[Scalar]:
        """Both ends of the range (checked against the training config up front)."""
        return [self.low, self.high]


class Uniform(_Range):
    """A float sampled uniformly from ``[low, high]``."""

    kind: Literal["uniform"] = "uniform"

    def to_tune(self) -> Any:
        """The matching ``ray.tune`` search-space object."""
        from ray import tune

        return tune.uniform(self.low, self.high)


class LogUniform(_Range):
    """A float whose logarithm is uniform on ``[log(low), log(high)]``; ``low`` must be > 0."""

    kind: Literal["loguniform"] = "loguniform"

    @model_validator(mode="after")
    def _positive(self) -> LogUniform:
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low:g}")
        return self

    def to_tune(self) -> Any:
        """The matching ``ray.tune`` search-space object."""
        from ray import tune

        return tune.loguniform(self.low, self.high)


class RandInt(_Range):
    """An integer sampled uniformly from ``[low, high]``, both ends included."""

    kind: Literal["randint"] = "randint"
    low: int
    high: int

    def to_tune(self) -> Any:
        """The matching ``ray.tune`` search-space object (Tune's upper bound is exclusive)."""
        from ray import tune

        return tune.randint(self.low, self.high + 1)


Distribution = Annotated[
    Choice | Grid | Uniform | LogUniform | RandInt, Field(discriminator="kind")
]
KINDS: dict[str, type[BaseModel]] = {
    "choice": Choice,
    "grid": Grid,
    "uniform": Uniform,
    "loguniform": LogUniform,
    "randint": RandInt,
}


def parse_distribution(text: str) -> Choice | Grid | Uniform | LogUniform | RandInt:
    """Parse ``kind(arg, ...)`` into a validated distribution.

    Raises:
        ConfigError: unknown kind, unparsable arguments, or arguments the kind rejects.
    """
    match = _CALL.match(text)
    if match is None:
        raise ConfigError(
            f"search space {text!r} is not kind(args); use one of {', '.join(KINDS)}, "
            "e.g. loguniform(0.001, 0.3)"
        )
    kind = match["kind"]
    if kind not in KINDS:
        raise ConfigError(f"unknown search space kind {kind!r}; choose one of {', '.join(KINDS)}")
    raw = [part.strip() for part in match["args"].split(",")]
    if any(not part for part in raw):
        raise ConfigError(f"search space {text!r} has an empty argument")
    args = [_scalar(part) for part in raw]
    if kind in ("choice", "grid"):
        data: dict[str, Any] = {"values": args}
    elif len(args) != 2:
        raise ConfigError(f"{kind} takes two arguments (low, high), got {len(args)} in {text!r}")
    else:
        data = {"low": args[0], "high": args[1]}
    try:
        return KINDS[kind].model_validate(data)  # type: ignore[return-value]
    except ValidationError as error:
        problem = error.errors()[0]
        reason = problem["msg"].removeprefix("Value error, ")
        raise ConfigError(f"search space {text!r}: {reason}") from None


def _scalar(text: str) -> Scalar:
    """A number if ``text`` is one (``1e6`` too, which YAML 1.1 reads as a string), else YAML."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            continue
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, Scalar):
        raise ConfigError(f"search space value {text!r} is not a number, string or boolean")
    return value


def parse_space_flag(flag: str) -> tuple[str, str]:
    """Split a ``--space key=kind(args)`` flag into its key and distribution text.

    Raises:
        ConfigError: no ``=`` or an empty key.
    """
    key, sep, text = flag.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--space expects key=kind(args), e.g. lr=loguniform(0.001,0.3); got {flag!r}"
        )
    return canonical_key(key.strip()), text.strip()


def canonical_key(key: str) -> str:
    """The training setting a space key names (``lr`` -> ``learning_rate``)."""
    return ALIASES.get(key, key)


def format_setting(value: object) -> str:
    """A sampled setting for a table: floats to 4 significant digits, None as empty."""
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
