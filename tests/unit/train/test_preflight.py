"""Checks before Ray starts: weights resolved, read and fitted, head chosen, data verified."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from support.corrupt import dataset_with_flipped_shard, flip_byte

from pomona.data.shards import read_manifest, write_manifest
from pomona.errors import CheckpointError, ConfigError, DatasetError
from pomona.models import build_model, save_model
from pomona.registry import Registry
from pomona.train import preflight
from pomona.train.config import TrainConfig
from pomona.train.preflight import prepare_run, resolve_weights, verify_dataset
from pomona.train.run_dir import write_config


class Payload:
    """Something only a full unpickler could rebuild."""


def weights_dir(directory: Path, dataset: Path, classes: list[str] | None = None) -> Path:
    manifest = read_manifest(dataset)
    classes = classes or manifest.classes
    save_model(
        directory,
        build_model("simple_cnn", len(classes), manifest.preprocessing.channels),
        architecture="simple_cnn",
        classes=classes,
        preprocessing=manifest.preprocessing,
    )
    return directory


def config(dataset: Path, out: Path, **model: object) -> TrainConfig:
    return TrainConfig(data=str(dataset), out=str(out), model=model)


def test_registry_reference_as_weights_resolves_to_local_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits_dataset: Path
) -> None:
    weights_dir(tmp_path / "model", digits_dataset)
    registry = Registry(str(tmp_path / "registry"))
    registry.register(tmp_path / "model", "base")
    registry.set_alias("base", 1, "production")
    monkeypatch.setenv("POMONA_REGISTRY", str(tmp_path / "registry"))
    resolved = resolve_weights(config(digits_dataset, tmp_path / "o", weights="base@production"))
    assert resolved.model.weights is not None
    assert (Path(resolved.model.weights) / "model.safetensors").is_file()


def test_a_relative_weights_path_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits_dataset: Path
) -> None:
    weights_dir(tmp_path / "model", digits_dataset)
    monkeypatch.chdir(tmp_path)
    resolved = resolve_weights(config(digits_dataset, tmp_path / "o", weights="model"))
    assert resolved.model.weights == str((tmp_path / "model").resolve())
    assert os.path.isabs(resolved.model.weights)
    tv = config(digits_dataset, tmp_path / "o", weights="torchvision:ResNet18_Weights.DEFAULT")
    assert resolve_weights(tv) == tv


def test_the_head_is_chosen_from_the_weights_card(tmp_path: Path, digits_dataset: Path) -> None:
    same = weights_dir(tmp_path / "same", digits_dataset)
    kept = prepare_run(config(digits_dataset, tmp_path / "a", weights=str(same)))
    assert kept.initial_weights is not None and kept.initial_weights.head == "kept"

    others = [f"letter_{c}" for c in "abcdefghij"]  # ten classes, like the digits
    other = weights_dir(tmp_path / "other", digits_dataset, classes=others)
    new = prepare_run(config(digits_dataset, tmp_path / "b", weights=str(other)))
    assert new.initial_weights is not None and new.initial_weights.head == "new"
    assert "the classes differ" in new.initial_weights.reason
    forced = prepare_run(config(digits_dataset, tmp_path / "c", weights=str(same), head="new"))
    assert forced.initial_weights is not None and forced.initial_weights.head == "new"
    assert prepare_run(config(digits_dataset, tmp_path / "d")).initial_weights is None


def test_weights_torch_load_refuses_fail_on_one_line(tmp_path: Path, digits_dataset: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"features.0.0.weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True") as raised:
        prepare_run(config(digits_dataset, tmp_path / "run", weights=str(path)))
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists()


def test_weights_of_another_architecture_are_refused(tmp_path: Path, digits_dataset: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save(build_model("resnet18", 10, 1).state_dict(), path)
    with pytest.raises(CheckpointError) as raised:
        prepare_run(config(digits_dataset, tmp_path / "run", weights=str(path)))
    assert str(raised.value) == (
        "pretrained weights do not fit simple_cnn: they are resnet18 weights; fine-tune them "
        "with --model resnet18 (model.architecture)"
    )


def test_a_flipped_shard_byte_is_refused(tmp_path: Path, digits_dataset: Path) -> None:
    shard = dataset_with_flipped_shard(digits_dataset, tmp_path / "ds")
    with pytest.raises(DatasetError, match=f"train: {shard} checksum"):
        prepare_run(config(tmp_path / "ds", tmp_path / "run"))


def test_a_verified_dataset_is_not_hashed_again_until_a_shard_is_written(
    tmp_path: Path, digits_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = tmp_path / "ds"
    shutil.copytree(digits_dataset, dataset)  # keeps the shards' modification times
    verified = verify_dataset(str(dataset))

    def verify_again(*args: object) -> None:
        raise AssertionError("the shards were hashed again")

    with monkeypatch.context() as patch:
        patch.setattr(preflight, "open_dataset", verify_again)
        assert verify_dataset(str(dataset), verified) is verified
        prepared = prepare_run(config(dataset, tmp_path / "run"), dataset=verified)
        assert prepared.dataset_sha256 == verified.sha256

    shard = read_manifest(dataset).splits["val"].shards[0].path
    flip_byte(dataset / shard)
    with pytest.raises(DatasetError, match=f"val: {shard} checksum"):
        verify_dataset(str(dataset), verified)


def test_a_resume_keeps_the_network_and_the_dataset(tmp_path: Path, digits_dataset: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir, config(digits_dataset, run_dir))
    # No epoch finished yet: any copy of the dataset will do, the network may not change.
    assert prepare_run(config(digits_dataset, run_dir), resume=True).resume
    with pytest.raises(ConfigError, match=r"model\.architecture simple_cnn -> resnet18"):
        prepare_run(config(digits_dataset, run_dir, architecture="resnet18"), resume=True)
    with pytest.raises(ConfigError, match=r"model\.freeze_backbone False -> True"):
        prepare_run(config(digits_dataset, run_dir, freeze_backbone=True), resume=True)

    # An epoch finished: its card records the dataset, and a moved copy of it still resumes.
    weights_dir(run_dir, digits_dataset)
    card = json.loads((run_dir / "model.json").read_text())
    moved = shutil.copytree(digits_dataset, tmp_path / "moved")
    card["dataset_sha256"] = verify_dataset(str(moved)).sha256
    (run_dir / "model.json").write_text(json.dumps(card))
    assert prepare_run(config(moved, run_dir), resume=True).resume
    other = shutil.copytree(digits_dataset, tmp_path / "other")
    write_manifest(other, read_manifest(other).model_copy(update={"source": "elsewhere"}))
    with pytest.raises(ConfigError, match=r"the run was trained on another dataset"):
        prepare_run(config(other, run_dir), resume=True)
