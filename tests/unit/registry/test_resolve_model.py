"""MODEL arguments: directories, model files and registry references, with clear failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.fake_models import flip_byte, make_model_dir

from pomona.errors import CheckpointError, ModelNotFoundError
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.registry import Registry, resolve_model, resolve_reference


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    registry.register(make_model_dir(tmp_path / "a", seed=1), "pets")
    registry.register(make_model_dir(tmp_path / "b", seed=2), "pets")
    registry.set_alias("pets", 1, "prod")
    return registry


def test_directories_and_model_files(tmp_path: Path, registry: Registry) -> None:
    run = make_model_dir(tmp_path / "run")
    assert resolve_model(str(run), registry) == run
    assert resolve_reference(str(run), registry) == (run, None)  # a path names no version
    assert resolve_model(str(run / WEIGHTS_FILE), registry) == run
    assert resolve_model(str(run / CARD_FILE), registry) == run
    version_dir = Path(registry.uri) / "pets" / "versions" / "2"
    assert resolve_model(str(version_dir), registry) == version_dir


@pytest.mark.parametrize(
    ("reference", "version"),
    [("pets", 2), ("pets:latest", 2), ("pets:1", 1), ("pets:2", 2), ("pets@prod", 1)],
)
def test_registry_references(registry: Registry, reference: str, version: int) -> None:
    assert resolve_reference(reference, registry) == (
        Path(registry.uri) / "pets" / "versions" / str(version),
        f"pets:{version}",
    )
    assert resolve_model(reference, registry) == (
        Path(registry.uri) / "pets" / "versions" / str(version)
    )


def test_a_path_wins_over_a_registry_name(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_model_dir(tmp_path / "pets")
    assert resolve_model("pets", registry) == Path("pets")


def test_default_registry_comes_from_the_environment(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POMONA_REGISTRY", registry.uri)
    assert resolve_model("pets@prod") == Path(registry.uri) / "pets" / "versions" / "1"


def test_failures_say_what_was_tried(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model("ghost", registry)
    assert str(error.value) == (
        f"model 'ghost' not found: no such file or directory, and no model 'ghost' in "
        f"registry {registry.uri}; models: pets"
    )
    with pytest.raises(ModelNotFoundError, match=r"no alias 'canary'.*versions 1, 2"):
        resolve_model("pets@canary", registry)
    with pytest.raises(ModelNotFoundError, match=r"version 7, which does not exist"):
        resolve_model("pets:7", registry)
    with pytest.raises(
        ModelNotFoundError,
        match=r"'runs/missing' not found: no such file or directory, and not a registry "
        r"reference \(invalid model name 'runs/missing'",
    ):
        resolve_model("runs/missing", registry)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"is a directory without model\.json"):
        resolve_model(str(tmp_path / "empty"), registry)
    # A folder named as a registered model (its images, say) does not hide the model.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pets").mkdir()
    assert resolve_model("pets", registry) == Path(registry.uri) / "pets" / "versions" / "2"
    monkeypatch.setenv("POMONA_REGISTRY", "ftp://host/registry")  # a registry that cannot open
    with pytest.raises(ModelNotFoundError, match=r"pets is a directory without model\.json"):
        resolve_model("pets")
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"is neither model\.safetensors nor model\.json"):
        resolve_model(str(tmp_path / "weights.pt"), registry)


def test_tampered_registry_versions_are_refused(registry: Registry) -> None:
    weights = Path(registry.uri) / "pets" / "versions" / "1" / WEIGHTS_FILE
    weights.write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="modified or corrupted"):
        resolve_model("pets@prod", registry)


@pytest.mark.parametrize("given", ["", WEIGHTS_FILE, CARD_FILE])
def test_a_flipped_byte_in_a_run_directory_is_refused(
    tmp_path: Path, registry: Registry, given: str
) -> None:
    run = make_model_dir(tmp_path / "run")
    flip_byte(run / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match=r"model\.safetensors has sha256 .* but its card"):
        resolve_model(str(run / given), registry)


def test_a_model_in_an_object_store_is_downloaded_once_and_checked(
    object_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POMONA_CACHE", str(tmp_path / "cache"))
    make_model_dir(object_store / "bucket" / "run")
    local = resolve_model("store://bucket/run")
    assert local.is_relative_to(tmp_path / "cache")
    assert (local / WEIGHTS_FILE).read_bytes() == (
        object_store / "bucket/run" / WEIGHTS_FILE
    ).read_bytes()
    assert resolve_model("store://bucket/run/model.safetensors") == local
    assert resolve_model("store://bucket/run/model.json") == local

    flip_byte(object_store / "bucket/run" / WEIGHTS_FILE)
    shutil.rmtree(local)
    with pytest.raises(CheckpointError, match=r"store://bucket/run/model.safetensors has sha256"):
        resolve_model("store://bucket/run")
    with pytest.raises(ModelNotFoundError, match=r"store://bucket/nothing holds no model.json"):
        resolve_model("store://bucket/nothing")
