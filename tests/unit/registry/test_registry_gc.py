"""Incomplete versions: what a killed registration leaves, and how gc finds and removes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from support.fake_models import make_model_dir

from pomona.errors import ModelNotFoundError, RegistryError
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.registry import VERSION_FILE, Registry

PLATFORM = Path(__file__).resolve().parents[3] / "platform"

# Registers MODEL_DIR into ROOT with a copy that stops halfway through the weights, then either
# SIGKILLs itself ("die") or says "copying" and waits on stdin to be killed from outside ("wait").
REGISTER_HALFWAY = """
import os, signal, sys
from pathlib import Path

from pomona.registry import Registry
from pomona.registry.backend import LocalBackend

root, model_dir, mode = sys.argv[1:]

def upload(self, source, destination):
    data = Path(source).read_bytes()
    with open(destination, "wb") as out:
        out.write(data[: len(data) // 2])
    if mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    print("copying", flush=True)
    sys.stdin.read()

LocalBackend.upload = upload
Registry(root).register(Path(model_dir), "pets")
"""


def register_halfway(root: Path, model_dir: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", REGISTER_HALFWAY, str(root), str(model_dir), mode],
        env={**os.environ, "PYTHONPATH": str(PLATFORM)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "model")


def test_a_registration_killed_mid_copy_is_found_and_removed(
    tmp_path: Path, model_dir: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    registry.register(model_dir, "pets")
    killed = register_halfway(tmp_path / "registry", model_dir, "die")
    assert killed.wait(timeout=120) == -signal.SIGKILL

    version_dir = Path(registry.uri) / "pets" / "versions" / "2"
    weights = version_dir / WEIGHTS_FILE
    assert 0 < weights.stat().st_size < (model_dir / WEIGHTS_FILE).stat().st_size
    assert not (version_dir / VERSION_FILE).exists()
    assert [v.version for v in registry.list_versions("pets")] == [1]
    with pytest.raises(RegistryError, match=r"pets:2 is an incomplete version.*registry gc pets"):
        registry.delete("pets", 2)

    # Within the grace period it is reported, not removed.
    assert [v.ref for v in registry.incomplete_versions("pets")] == ["pets:2"]
    (found,) = registry.gc()
    assert (found.ref, found.files, found.writing, found.removed) == (
        "pets:2",
        (WEIGHTS_FILE,),
        False,
        False,
    )
    assert found.size == weights.stat().st_size
    assert weights.exists()

    (removed,) = registry.gc("pets", grace_s=0)
    assert removed.ref == "pets:2" and removed.removed
    assert list(version_dir.iterdir()) == []
    assert registry.gc(grace_s=0) == []
    assert registry.gc("ghost", grace_s=0) == []
    # gc keeps the directory, so the number stays taken.
    assert registry.register(model_dir, "pets").version == 3
    with pytest.raises(ModelNotFoundError):
        registry.get("pets:2")


def test_a_live_registration_is_never_removed(tmp_path: Path, model_dir: Path) -> None:
    registry = Registry(tmp_path / "registry")
    live = register_halfway(tmp_path / "registry", model_dir, "wait")
    try:
        assert live.stdout is not None and live.stdout.readline() == "copying\n"
        (found,) = registry.gc(grace_s=0)
        assert (found.ref, found.writing, found.removed) == ("pets:1", True, False)
        assert (Path(registry.uri) / "pets" / "versions" / "1" / WEIGHTS_FILE).exists()
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait(timeout=60)
    # The kernel released its lock with the process: now it is garbage.
    (removed,) = registry.gc(grace_s=0)
    assert (removed.ref, removed.writing, removed.removed) == ("pets:1", False, True)


def test_object_store_gc_keeps_the_claim(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "bucket").mkdir()
    bucket = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem())
    registry = Registry("models", filesystem=bucket)
    registry.register(model_dir, "pets")
    published = tmp_path / "bucket" / "models" / "pets" / "versions" / "1"
    # What a crash after the first upload leaves: the claim object and the weights.
    crashed = published.parent / "2"
    crashed.mkdir()
    claim = next(p.name for p in published.iterdir() if p.name.startswith(".claim-"))
    (crashed / claim).write_bytes(b"")
    (crashed / WEIGHTS_FILE).write_bytes((model_dir / WEIGHTS_FILE).read_bytes())

    (removed,) = registry.gc(grace_s=0)
    assert (removed.ref, removed.files, removed.removed) == ("pets:2", (WEIGHTS_FILE,), True)
    assert [p.name for p in crashed.iterdir()] == [claim]
    assert sorted(p.name for p in published.iterdir() if p.name != claim) == sorted(
        [WEIGHTS_FILE, CARD_FILE, VERSION_FILE]
    )
    assert registry.register(model_dir, "pets").version == 3
