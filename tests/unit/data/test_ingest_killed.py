"""A SIGKILLed ``pomona ingest`` leaves nothing that outlives it, and the next ingest cleans up.

This kills a real ingest process (no Ray) in the middle of decoding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image
from support.cli import cli_command, cli_env

from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import Preprocessing
from pomona.errors import DatasetError
from pomona.storage import exclusive_writer

_BOUND_S = 60  # generous upper bound for anything to happen on a busy machine; never a timing


def wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + _BOUND_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {_BOUND_S} s for {what}")
        time.sleep(0.05)


def slow_folder(root: Path, per_class: int = 2000) -> Path:
    """Two classes of hard links to one large JPEG each: quick to make, slow to decode."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        first = root / name / "0.jpg"
        first.parent.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(first)
        for i in range(1, per_class):
            os.link(first, root / name / f"{i}.jpg")
    return root


def small_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def semaphores(process: psutil.Process) -> set[str]:
    """Named POSIX semaphores that ``process`` has mapped."""
    maps = Path(f"/proc/{process.pid}/maps").read_text()
    return {line.split()[-1] for line in maps.splitlines() if "/dev/shm/sem." in line}


def test_killed_ingest_leaves_nothing_running_and_the_next_ingest_cleans_up(
    tmp_path: Path,
) -> None:
    src, out = slow_folder(tmp_path / "src"), tmp_path / "ds"
    child = subprocess.Popen(
        cli_command("ingest", src, out, "--image-size", "16", "--workers", "2"),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: any(tmp_path.glob(".ds.*.partial/.staging/chunk-*.npy")), "a staged chunk"
        )
        parent = psutil.Process(child.pid)
        pool = parent.children(recursive=True)
        named = semaphores(parent)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    assert len(pool) >= 2  # the two decoding workers (and multiprocessing's resource tracker)
    assert named, "the pool should use named semaphores; this test would check nothing"
    assert not (out / "manifest.json").exists()
    assert list(tmp_path.glob(".ds.*.partial"))  # what a killed ingest leaves, by design

    wait_until(lambda: not any(map(alive, pool)), "the pool's processes to end")
    wait_until(lambda: not any(Path(name).exists() for name in named), "semaphores unlinked")

    manifest = ingest(
        IngestConfig(
            src=small_folder(tmp_path / "small"),
            out=out,
            preprocessing=Preprocessing(height=8, width=8),
            workers=1,
        )
    )
    assert manifest.ingested == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "small", "src"]


def test_a_live_ingest_of_the_same_out_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    live = tmp_path / ".ds.0123abcd.partial"
    live.mkdir()
    config = IngestConfig(src=small_folder(tmp_path / "small"), out=out, workers=1)
    with exclusive_writer(out), pytest.raises(DatasetError, match="another pomona ingest"):
        ingest(config)
    assert live.is_dir()
    ingest(config)  # the lock went with its holder: now the leftover is stale
    assert not live.exists()
