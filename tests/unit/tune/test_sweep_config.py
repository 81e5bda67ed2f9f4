"""Sweep configs and search spaces: parsed and checked without Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomona.config import load_config, validate
from pomona.errors import ConfigError
from pomona.tune.config import SweepConfig, trial_config
from pomona.tune.space import (
    Choice,
    Grid,
    LogUniform,
    RandInt,
    Uniform,
    parse_distribution,
    parse_space_flag,
)

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def sweep(space: dict[str, str], **updates: object) -> SweepConfig:
    data = {"out": "S", "train": {"data": "D", "epochs": 3, "num_workers": 2}, "space": space}
    return validate(SweepConfig, {**data, **updates}, "sweep")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("loguniform(0.001,0.3)", LogUniform(low=0.001, high=0.3)),
        ("uniform( 0.5 , 0.95 )", Uniform(low=0.5, high=0.95)),
        ("randint(1, 4)", RandInt(low=1, high=4)),
        ("choice(32,64,128)", Choice(values=[32, 64, 128])),
        ("grid(cosine, step)", Grid(values=["cosine", "step"])),
        ("choice(1e6, true)", Choice(values=[1e6, True])),
    ],
)
def test_distributions_parse(text: str, expected: object) -> None:
    assert parse_distribution(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("normal(0, 1)", "unknown search space kind 'normal'"),
        ("loguniform(0, 1)", "loguniform needs low > 0"),
        ("uniform(0.3, 0.1)", "low (0.3) must be below high (0.1)"),
        ("uniform(3)", "uniform takes two arguments"),
        ("choice(1,,2)", "empty argument"),
        ("0.1", "is not kind(args)"),
        ("choice([1, 2])", "is not a number, string or boolean"),
    ],
)
def test_bad_distributions_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as error:
        parse_distribution(text)
    assert message in str(error.value)


def test_space_flag_uses_the_train_flag_names() -> None:
    assert parse_space_flag("lr=loguniform(0.001,0.3)") == (
        "learning_rate",
        "loguniform(0.001,0.3)",
    )
    assert parse_space_flag("schedule.name=choice(a,b)") == ("schedule.name", "choice(a,b)")
    with pytest.raises(ConfigError, match="--space expects key=kind"):
        parse_space_flag("loguniform(0.001,0.3)")


def test_config_sets_each_trials_out_and_counts_grid_trials() -> None:
    config = sweep(
        {"lr": "loguniform(0.001,0.3)", "momentum": "grid(0.5, 0.9)", "schedule.name": "grid(a,b)"}
        | {"schedule.name": "grid(cosine, step)"},
        trials=3,
    )
    assert config.train.out == "S/trials"
    assert set(config.space) == {"learning_rate", "momentum", "schedule.name"}
    assert config.total_trials == 3 * 2 * 2
    assert config.scheduler.name == "asha" and config.metric == "val_error" and config.mode == "min"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"momentum": "grid(0.5, 1.5)"},
            "space momentum=1.5: momentum: Input should be less than 1",
        ),
        ({"batch_size": "choice(1, 64)"}, "batch_size (1) must be >= num_workers (2)"),
        ({"foo": "choice(1, 2)"}, "'foo' is not a training setting"),
        ({"schedule.nme": "choice(a, b)"}, "'nme' is not a training setting"),
        ({"train.momentum": "uniform(0.8, 0.9)"}, "training settings already; write 'momentum'"),
        ({"epochs.x": "choice(1, 2)"}, "'epochs' has no nested settings"),
        ({"data": "choice(a, b)"}, "cannot vary 'data'"),
        ({"lr": "uniform(0.1, 0.2)", "learning_rate": "uniform(0.1, 0.2)"}, "appears twice"),
    ],
)
def test_bad_space_fails_before_any_trial(space: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as error:
        sweep(space)
    assert message in str(error.value)


def test_other_bad_settings_name_the_value() -> None:
    with pytest.raises(ConfigError, match="grace_period"):
        load_config(
            SweepConfig,
            overrides=["out=S", "train.data=D", "train.epochs=2", "scheduler.grace_period=3"],
            flags={"space": {"lr": "uniform(0.1, 0.2)"}},
        )
    with pytest.raises(ConfigError, match="unknown metric 'accuracy'"):
        sweep({"lr": "uniform(0.1, 0.2)"}, metric="accuracy")
    with pytest.raises(ConfigError, match=r"train\.out is set per trial"):
        validate(
            SweepConfig,
            {"out": "S", "train": {"data": "D", "out": "R"}, "space": {"lr": "uniform(0.1, 0.2)"}},
            "sweep",
        )


def test_trial_config_applies_nested_settings_and_validates_again() -> None:
    base = sweep({"lr": "uniform(0.1, 0.2)"}).train
    trial = trial_config(base, {"learning_rate": 0.15, "schedule.name": "step"}, "S/trials/t1")
    assert (trial.learning_rate, trial.schedule.name, trial.out) == (0.15, "step", "S/trials/t1")
    assert base.learning_rate == 0.05 and base.schedule.name == "cosine"  # base untouched
    # Each value alone is valid; together they are not: only this trial fails.
    with pytest.raises(ConfigError, match="nesterov needs momentum > 0"):
        trial_config(base, {"momentum": 0.0, "nesterov": True}, "S/trials/t2")


def test_example_sweep_config_validates() -> None:
    config = load_config(SweepConfig, CONFIGS / "sweep-digits.yaml", ["trials=2"])
    assert config.trials == 2
    assert config.train.out == "pomona-demo/sweep/trials"
    assert isinstance(config.space["learning_rate"], LogUniform)


def test_optuna_searcher_without_optuna_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "optuna" else find_spec(name)
    )
    with pytest.raises(ConfigError, match=r"pip install 'pomona\[optuna\]'"):
        sweep({"lr": "uniform(0.1, 0.2)"}, searcher="optuna")
