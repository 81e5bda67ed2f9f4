"""The registry publishes immutable, uniquely numbered versions and guards its aliases."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from support.fake_models import make_model_dir

from pomona.errors import CheckpointError, ModelNotFoundError, RegistryError
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.registry import ALIASES_FILE, VERSION_FILE, ModelRef, Registry
from pomona.storage import sha256_file

PLATFORM = Path(__file__).resolve().parents[3] / "platform"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "model")


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def remote_registry(tmp_path: Path) -> Registry:
    """A local directory seen through a non-local pyarrow filesystem, as S3 or GCS would be."""
    (tmp_path / "bucket").mkdir(exist_ok=True)
    return Registry(
        "models",
        filesystem=pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem()),
    )


def test_register_twice_gives_versions_1_and_2(
    registry: Registry, model_dir: Path, tmp_path: Path
) -> None:
    first = registry.register(model_dir, "pets")
    second = registry.register(make_model_dir(tmp_path / "other", seed=1), "pets")

    assert (first.version, second.version) == (1, 2)
    assert first.ref == "pets:1"
    assert first.architecture == "simple_cnn" and first.classes == ["cat", "dog"]
    assert first.metrics == {"val_error": 0.1}
    assert first.source == str(model_dir.resolve())
    version_dir = Path(registry.uri) / "pets" / "versions" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == sorted(
        [WEIGHTS_FILE, CARD_FILE, VERSION_FILE]
    )
    for filename in (WEIGHTS_FILE, CARD_FILE):
        assert (version_dir / filename).read_bytes() == (model_dir / filename).read_bytes()
        assert first.files[filename] == sha256_file(model_dir / filename)
    assert registry.list_models() == ["pets"]
    assert [v.version for v in registry.list_versions("pets")] == [1, 2]
    assert registry.get("pets") == second
    assert registry.get("pets:1") == first
    assert registry.get(ModelRef("pets", version=1)) == first
    assert registry.resolve("pets:latest") == 2


def test_version_without_marker_is_invisible(registry: Registry, model_dir: Path) -> None:
    registry.register(model_dir, "pets")
    # A registration that crashed after copying the files but before writing version.json.
    crashed = Path(registry.uri) / "pets" / "versions" / "2"
    crashed.mkdir()
    (crashed / WEIGHTS_FILE).write_bytes((model_dir / WEIGHTS_FILE).read_bytes())

    assert [v.version for v in registry.list_versions("pets")] == [1]
    assert registry.resolve("pets") == 1
    with pytest.raises(ModelNotFoundError, match="versions 1"):
        registry.get("pets:2")
    # Its number stays taken: nobody may ever see two different models as pets:2.
    assert registry.register(model_dir, "pets").version == 3


def test_failed_registration_leaves_nothing(
    registry: Registry, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(registry._backend, "write_atomic", fail)
    with pytest.raises(OSError, match="disk full"):
        registry.register(model_dir, "pets")
    assert list((Path(registry.uri) / "pets" / "versions").iterdir()) == []
    assert registry.list_models() == []
    monkeypatch.undo()
    assert registry.register(model_dir, "pets").version == 1


@pytest.mark.parametrize(
    ("break_it", "match"),
    [
        (lambda d: (d / WEIGHTS_FILE).unlink(), "missing model.safetensors"),
        (lambda d: (d / CARD_FILE).write_text("{}"), "architecture"),
        (lambda d: (d / WEIGHTS_FILE).write_bytes(b"other weights"), "do not belong"),
    ],
)
def test_invalid_model_dir_is_refused(
    registry: Registry, model_dir: Path, break_it: Callable[[Path], None], match: str
) -> None:
    break_it(model_dir)
    with pytest.raises(CheckpointError, match=match):
        registry.register(model_dir, "pets")
    assert registry.list_models() == []


_BARRIER = None


def _start_together(barrier: object) -> None:
    global _BARRIER
    _BARRIER = barrier


def _register_in_process(job: tuple[str, str]) -> int:
    root, model_dir = job
    _BARRIER.wait(timeout=60)  # type: ignore[attr-defined]
    return Registry(root).register(Path(model_dir), "race").version


def test_concurrent_processes_get_distinct_numbers(tmp_path: Path) -> None:
    root = str(tmp_path / "registry")
    jobs = [(root, str(make_model_dir(tmp_path / f"m{i}", seed=i))) for i in range(8)]
    # fork: the children inherit the imported modules; spawning 8 fresh interpreters that each
    # import pomona (and through pomona.models, torch) takes far longer than the race itself.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(len(jobs))
    with context.Pool(len(jobs), initializer=_start_together, initargs=(barrier,)) as pool:
        numbers = pool.map(_register_in_process, jobs, chunksize=1)
    assert sorted(numbers) == list(range(1, 9))
    versions = Registry(root).list_versions("race")
    # Each number holds the model that was registered under it.
    by_source = {v.source: v.version for v in versions}
    assert by_source == {str(Path(d).resolve()): n for (_, d), n in zip(jobs, numbers, strict=True)}


@pytest.mark.parametrize("kind", ["local", "object store"])
def test_concurrent_threads_get_distinct_numbers(tmp_path: Path, kind: str) -> None:
    registry = Registry(tmp_path / "registry") if kind == "local" else remote_registry(tmp_path)
    dirs = [make_model_dir(tmp_path / f"m{i}", seed=i) for i in range(8)]
    barrier = threading.Barrier(len(dirs))

    def register(model_dir: Path) -> int:
        barrier.wait(timeout=30)
        return registry.register(model_dir, "race").version

    with ThreadPoolExecutor(len(dirs)) as pool:
        numbers = list(pool.map(register, dirs))
    assert len(set(numbers)) == 8
    assert [v.version for v in registry.list_versions("race")] == sorted(numbers)
    for version, model_dir in zip(numbers, dirs, strict=True):
        assert registry.get(f"race:{version}").files[WEIGHTS_FILE] == sha256_file(
            model_dir / WEIGHTS_FILE
        )


def test_aliases_set_move_resolve_remove(registry: Registry, model_dir: Path) -> None:
    registry.register(model_dir, "pets")
    registry.register(model_dir, "pets")

    assert registry.aliases("pets") == {}
    assert registry.set_alias("pets", 1, "prod") is None
    assert registry.resolve("pets@prod") == 1
    assert registry.set_alias("pets", 2, "prod") == 1
    registry.set_alias("pets", 1, "staging")
    assert registry.resolve("pets@prod") == 2
    assert registry.aliases("pets") == {"prod": 2, "staging": 1}
    on_disk = json.loads((Path(registry.uri) / "pets" / ALIASES_FILE).read_text())
    assert on_disk == {"prod": 2, "staging": 1}
    assert not [p for p in (Path(registry.uri) / "pets").iterdir() if p.name.endswith(".tmp")]

    assert registry.remove_alias("pets", "staging") == 1
    assert registry.aliases("pets") == {"prod": 2}
    with pytest.raises(ModelNotFoundError, match=r"no alias 'staging'.*prod->2"):
        registry.get("pets@staging")
    with pytest.raises(ModelNotFoundError, match="staging"):
        registry.remove_alias("pets", "staging")
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        registry.set_alias("pets", 7, "prod")
    with pytest.raises(RegistryError, match="reserved"):
        registry.set_alias("pets", 1, "latest")
    with pytest.raises(RegistryError, match="positive integer, got '1'"):
        registry.set_alias("pets", "1", "prod")  # type: ignore[arg-type]


def test_delete_refuses_aliased_versions_and_never_reuses_numbers(
    registry: Registry, model_dir: Path
) -> None:
    registry.register(model_dir, "pets")
    registry.register(model_dir, "pets")
    registry.set_alias("pets", 2, "prod")
    registry.set_alias("pets", 2, "canary")

    with pytest.raises(
        RegistryError, match="pets:2 is still aliased as canary, prod; move or remove"
    ):
        registry.delete("pets", 2)
    assert registry.resolve("pets") == 2

    registry.set_alias("pets", 1, "prod")
    registry.remove_alias("pets", "canary")
    registry.delete("pets", 2)
    assert [v.version for v in registry.list_versions("pets")] == [1]
    with pytest.raises(ModelNotFoundError):
        registry.get("pets:2")
    with pytest.raises(ModelNotFoundError):
        registry.delete("pets", 2)
    assert registry.register(model_dir, "pets").version == 3

    registry.remove_alias("pets", "prod")
    registry.delete("pets", 1)
    registry.delete("pets", 3)
    assert registry.list_models() == []
    with pytest.raises(ModelNotFoundError, match="no model 'pets'"):
        registry.list_versions("pets")
    assert registry.aliases("pets") == {}
    assert registry.register(model_dir, "pets").version == 4


@pytest.mark.parametrize("name", ["../x", "a/b", "", "UP"])
def test_bad_names_are_rejected(registry: Registry, model_dir: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="invalid model name"):
        registry.register(model_dir, name)
    with pytest.raises(RegistryError):
        registry.get(name)
    with pytest.raises(RegistryError, match="invalid alias"):
        registry.set_alias("pets", 1, name)
    assert not (Path(registry.uri)).exists()


def test_missing_model_lists_what_exists(registry: Registry, model_dir: Path) -> None:
    registry.register(model_dir, "pets")
    with pytest.raises(ModelNotFoundError, match=r"no model 'petz'.*models: pets"):
        registry.get("petz")


def test_local_path_verifies_checksums(registry: Registry, model_dir: Path) -> None:
    registry.register(model_dir, "pets")
    path = registry.local_path("pets")
    assert path == Path(registry.uri) / "pets" / "versions" / "1"
    (path / WEIGHTS_FILE).write_bytes(b"tampered weights")
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors has sha256 .* version\.json records"
    ):
        registry.local_path("pets:1")
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        registry.local_path("pets:1")


def test_file_uri_root(tmp_path: Path, model_dir: Path) -> None:
    registry = Registry(f"file://{tmp_path / 'registry'}")
    assert registry.register(model_dir, "pets").version == 1
    assert Registry(tmp_path / "registry").list_models() == ["pets"]
    path = registry.local_path("pets:latest")
    assert path.is_relative_to(tmp_path / "registry")
    assert (path / CARD_FILE).read_bytes() == (model_dir / CARD_FILE).read_bytes()


def test_remote_registry_downloads_into_a_verified_cache(tmp_path: Path, model_dir: Path) -> None:
    registry = remote_registry(tmp_path)
    registry.register(model_dir, "pets")
    registry.set_alias("pets", 1, "prod")
    cache = tmp_path / "cache"

    path = registry.local_path("pets@prod", cache_dir=cache)
    assert path.is_relative_to(cache)
    for filename in (WEIGHTS_FILE, CARD_FILE):
        assert (path / filename).read_bytes() == (model_dir / filename).read_bytes()
    assert registry.local_path("pets:1", cache_dir=cache) == path

    # A damaged cache is replaced; a damaged registry copy is refused.
    (path / WEIGHTS_FILE).write_bytes(b"bit rot")
    assert registry.local_path("pets", cache_dir=cache) == path
    assert (path / WEIGHTS_FILE).read_bytes() == (model_dir / WEIGHTS_FILE).read_bytes()
    stored = tmp_path / "bucket" / "models" / "pets" / "versions" / "1" / WEIGHTS_FILE
    stored.write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="modified or"):
        registry.local_path("pets", cache_dir=tmp_path / "fresh-cache")
    assert not list((tmp_path / "fresh-cache").rglob(WEIGHTS_FILE))


def test_default_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POMONA_REGISTRY", str(tmp_path / "from-env"))
    assert Registry().uri == str(tmp_path / "from-env")


def test_a_registry_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a registry")
    with pytest.raises(RegistryError, match=r"notes\.txt is a file, not a directory"):
        Registry(tmp_path / "notes.txt")
    assert Registry(tmp_path / "new").list_models() == []
