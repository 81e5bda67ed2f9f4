"""`pomona train` argument errors: one clear line, exit 2, and no Ray started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "d"), "out: Field required"),
        (("--data", "d", "--out", "{tmp}/run", "--model", "vgg"), "unknown architecture 'vgg'"),
        (("--data", "d", "--out", "{tmp}/run", "--set", "epochs=0"), "epochs"),
        (("--data", "d", "--out", "{tmp}/run", "--set", "lr"), "--set expects key=value"),
        (
            ("--data", "d", "--out", "{tmp}/run", "--workers", "4", "--batch-size", "2"),
            ">= num_workers",
        ),
        (("--data", "d", "--out", "{tmp}/existing"), "already exists; continue it with"),
        (("--resume", "{tmp}/empty"), "does not exist"),
        (("{tmp}/missing.yaml",), "config file"),
    ],
)
def test_train_errors(pomona, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "metrics.csv").write_text("epoch\n")
    ray_was_running = ray_running()
    result = pomona("train", *(a.format(tmp=tmp_path) for a in args))
    assert result.code == 2, result.out
    assert message in result.err
    assert "Traceback" not in result.err
    assert ray_running() == ray_was_running  # rejected before Ray was started


def ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()
