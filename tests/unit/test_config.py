from __future__ import annotations

from pathlib import Path

import pytest

from pomona.config import load_config, parse_overrides
from pomona.errors import ConfigError
from pomona.train.config import TrainConfig


def test_parse_overrides_nests_and_types_values() -> None:
    assert parse_overrides(["a.b=1", "a.c=0.5", "d=true", "e=x", "f=[1, 2]"]) == {
        "a": {"b": 1, "c": 0.5},
        "d": True,
        "e": "x",
        "f": [1, 2],
    }


@pytest.mark.parametrize("pair", ["novalue", "=3", " =3"])
def test_parse_overrides_rejects_malformed(pair: str) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides([pair])


def test_precedence_file_then_set_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "data: d\nout: o\nepochs: 3\nlearning_rate: 0.2\nmodel: {architecture: resnet18}\n"
    )
    config = load_config(
        TrainConfig, path, ["epochs=4", "learning_rate=0.3"], {"learning_rate": 0.4, "seed": None}
    )
    assert (config.epochs, config.learning_rate, config.seed) == (4, 0.4, 0)
    assert config.model.architecture == "resnet18"


def test_errors_name_the_key_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(TrainConfig, None, ["data=d", "out=o", "epochs=0", "model.architecture=vgg"])
    message = str(error.value)
    assert "epochs" in message and "(got 0)" in message
    # A validator's own message, without pydantic's prefix or a repeat of the value it names.
    assert "model.architecture: unknown architecture 'vgg'; choose one of" in message
    assert "Value error" not in message and "(got 'vgg')" not in message
    with pytest.raises(ConfigError, match="typo"):
        load_config(TrainConfig, None, ["data=d", "out=o", "typo=1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(TrainConfig, tmp_path / "list.yaml")


def test_errors_name_the_flag_that_gave_the_value() -> None:
    """A bad value from a flag is named by that flag; one from --set by its key."""
    flags = {"data": "d", "out": "o", "learning_rate": -1.0, "num_workers": 0, "epochs": 0}
    with pytest.raises(ConfigError) as error:
        load_config(TrainConfig, None, ["momentum=-1"], flags, {"learning_rate": "--lr"})
    lines = str(error.value).splitlines()[1:]
    assert "  --lr: Input should be greater than 0 (got -1.0)" in lines
    assert "  --num-workers: Input should be greater than 0 (got 0)" in lines  # flag_of's name
    assert "  --epochs: Input should be greater than 0 (got 0)" in lines
    assert any(line.startswith("  momentum: ") for line in lines)


def test_a_flag_names_the_keys_below_it_and_is_reported_once() -> None:
    from pomona.data.ingest import IngestConfig

    flags = {
        "src": "s",
        "out": "o",
        "preprocessing.height": 0,
        "preprocessing.width": 0,
        "split": {"train": 0.5, "val": 0.5, "test": "x"},
    }
    names = {"preprocessing.height": "--image-size", "preprocessing.width": "--image-size"}
    with pytest.raises(ConfigError) as error:
        load_config(IngestConfig, flags=flags, flag_names=names)
    lines = str(error.value).splitlines()[1:]
    assert lines.count("  --image-size: Input should be greater than 0 (got 0)") == 1
    split = "  --split (test): Input should be a valid number"
    assert any(line.startswith(split) for line in lines)


def test_a_missing_setting_is_named_by_its_flag_and_an_unknown_key_lists_the_keys() -> None:
    from pomona.tune.config import SweepConfig

    with pytest.raises(ConfigError) as error:
        load_config(SweepConfig, None, ["train.model.typo=1"], {"out": "o", "train.data": None})
    lines = str(error.value).splitlines()[1:]
    assert "  --data: Field required" in lines  # inside train, which nothing gave
    assert "  space: Field required" in lines  # no flag in this call gives it
    typo = "  train.model.typo: not a setting; choose one of architecture, weights, head, "
    assert any(line.startswith(typo) for line in lines)


def test_help_texts_show_the_config_defaults() -> None:
    from pomona.config import default_text, with_default
    from pomona.tune.config import SweepConfig

    assert with_default(TrainConfig, "epochs", "Epochs.") == "Epochs. [default: 10]"
    assert default_text(TrainConfig, "model.architecture") == "simple_cnn"
    assert default_text(SweepConfig, "train.num_workers") == "2"  # through the nested model
    assert default_text(TrainConfig, "data") == ""  # required: no default
    with pytest.raises(KeyError, match=r"no setting 'model\.typo'"):
        default_text(TrainConfig, "model.typo")


def test_a_check_of_several_settings_names_the_flags_that_gave_them() -> None:
    """A validator's message names a setting by its flag where a flag gave it, and by its key
    where the file or --set did; settings checked inside a nested model are found too."""
    from pomona.tune.config import SweepConfig

    names = {"num_workers": "--workers"}
    flags = {"data": "d", "out": "o", "batch_size": 1, "num_workers": 2}
    with pytest.raises(ConfigError, match=r"\n  --batch-size \(1\) must be >= --workers \(2\): "):
        load_config(TrainConfig, None, (), flags, names)
    flags = {"data": "d", "out": "o", "num_workers": 2}
    with pytest.raises(ConfigError, match=r"\n  batch_size \(1\) must be >= --workers \(2\): "):
        load_config(TrainConfig, None, ["batch_size=1"], flags, names)
    with pytest.raises(ConfigError, match=r"\n  model: --head keep needs --weights: "):
        load_config(TrainConfig, None, (), {"data": "d", "out": "o", "model.head": "keep",
                                           "model.weights": None})  # fmt: skip

    flags = {"out": "o", "train.data": "d", "train.batch_size": 1, "train.num_workers": 2}
    with pytest.raises(ConfigError) as error:
        load_config(SweepConfig, None, (), flags, {"train.num_workers": "--workers"})
    assert "  train: --batch-size (1) must be >= --workers (2): " in str(error.value)
    flags = {
        "out": "o",
        "train.data": "d",
        "train.num_workers": 2,
        "train.batch_size": 64,  # the space's value replaces it: named by its key
        "space": {"batch_size": "choice(1)"},
    }
    with pytest.raises(ConfigError, match=r"^invalid space batch_size=1: batch_size \(1\) must be "
                       r">= --workers \(2\): "):  # fmt: skip
        load_config(SweepConfig, None, (), flags, {"train.num_workers": "--workers"})
