"""``--weights`` naming a model: verified against its recorded sha256 before training uses it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.fake_models import flip_byte, make_model_dir

from pomona.errors import CheckpointError
from pomona.models.card import WEIGHTS_FILE
from pomona.registry import Registry
from pomona.train.config import TrainConfig
from pomona.train.preflight import resolve_weights


def weights_of(config: TrainConfig, registry: Registry | None = None) -> str | None:
    return resolve_weights(config, registry).model.weights


def config_with(weights: str) -> TrainConfig:
    return TrainConfig(data="d", out="o", model={"weights": weights})


def test_a_run_directory_with_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    run = make_model_dir(tmp_path / "run")
    assert weights_of(config_with(str(run))) == str(run)
    flip_byte(run / WEIGHTS_FILE)
    for given in (run, run / WEIGHTS_FILE):
        with pytest.raises(CheckpointError, match=r"sha256 .* but its card records"):
            weights_of(config_with(str(given)))


def test_registry_references_use_the_given_registry(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    registry.register(make_model_dir(tmp_path / "model"), "base")
    assert weights_of(config_with("base:1"), registry) == str(
        Path(registry.uri) / "base" / "versions" / "1"
    )


def test_plain_weights_files_are_left_as_they_are(tmp_path: Path) -> None:
    plain = tmp_path / "backbone.safetensors"
    plain.write_bytes((make_model_dir(tmp_path / "model") / WEIGHTS_FILE).read_bytes())
    for weights in (str(plain), "torchvision:ResNet18_Weights.IMAGENET1K_V1"):
        assert weights_of(config_with(weights)) == weights


def test_remote_weights_stay_a_uri_that_each_process_fetches(
    object_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pomona.train.preflight import local_weights

    monkeypatch.setenv("POMONA_CACHE", str(tmp_path / "cache"))
    make_model_dir(object_store / "bucket" / "run")
    assert weights_of(config_with("store://bucket/run")) == "store://bucket/run"
    local = Path(local_weights("store://bucket/run"))
    assert local.is_relative_to(tmp_path / "cache") and (local / WEIGHTS_FILE).is_file()
    other = make_model_dir(tmp_path / "other")
    assert weights_of(config_with(f"file://{other}")) == str(other)  # file:// is a local path
    flip_byte(object_store / "bucket" / "run" / WEIGHTS_FILE)
    shutil.rmtree(local)  # the cached copy is intact: it would be used as it is
    with pytest.raises(CheckpointError, match=r"store://bucket/run/model.safetensors has sha256"):
        weights_of(config_with("store://bucket/run"))
