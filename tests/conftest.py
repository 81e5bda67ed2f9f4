"""Shared fixtures: Ray on loopback and offline, one local Ray per session, tiny data, the CLI."""

from __future__ import annotations

import os

from pomona.cluster.runtime import LOCAL_RAY_ENV

# Before anything imports Ray: pomona's local defaults (loopback only, no usage reporting, token
# authentication; see shared/RAY-NOTES.md).
os.environ.update(LOCAL_RAY_ENV)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pomona import location
from pomona.cli import main
from pomona.data.demo import write_digits
from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import Preprocessing


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray (2 CPUs, on loopback) for the whole test session, shut down at the end."""
    import ray

    from pomona.cluster.runtime import ensure_ray

    ensure_ray(num_cpus=2, log_to_driver=True)
    yield
    ray.shutdown()


@pytest.fixture
def ray_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the code under test starts or joins Ray (through pomona's one way in)."""
    from pomona.cluster import runtime

    def refuse(*_args: object, **_kwargs: object) -> None:
        pytest.fail("Ray was started; this mistake must be reported before Ray is needed")

    monkeypatch.setattr(runtime, "ensure_ray", refuse)


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 real digits as 16x16 PNGs in class folders."""
    root = tmp_path_factory.mktemp("digits") / "images"
    write_digits(root, layout="folders", size=16, limit=600)
    return root


@pytest.fixture(scope="session")
def digits_dataset(digits_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 600 digits ingested at 16x16x1."""
    out = tmp_path_factory.mktemp("datasets") / "digits"
    ingest(
        IngestConfig(
            src=digits_folder,
            out=out,
            preprocessing=Preprocessing(height=16, width=16, channels=1),
            workers=1,
            shard_rows=128,
        )
    )
    return out


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def pomona(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Call as ``pomona("ingest", src, out)``; returns exit code, stdout and stderr."""

    def run(*args: object) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["pomona", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def object_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """URIs ``store://PATH`` name ``<returned dir>/PATH`` through a filesystem that is not
    pyarrow's local one, so pomona treats them as an object store (local staging, uploads,
    marker last). The filesystem pickles, so Ray workers given a location use it too; only this
    process parses ``store://`` strings."""
    root = tmp_path / "store"
    root.mkdir()
    real = location._open_uri

    def open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
        if uri.startswith("store://"):
            return pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem()), uri[len("store://") :]
        return real(uri)

    monkeypatch.setattr(location, "_open_uri", open_uri)
    return root
