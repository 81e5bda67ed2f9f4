"""A successful command prints only pomona's own output: no Ray log lines, warnings or banners.

A sweep's quiet is checked with the optuna sweep in ``test_cli_sweep.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.cli import cli_command, cli_env

pytestmark = pytest.mark.e2e


def noise(stderr: str) -> list[str]:
    """Lines of ``stderr`` that are not pomona's progress bars (the only thing it writes there
    on success)."""
    return [line for line in stderr.splitlines() if line.strip() and "━" not in line]


@pytest.mark.ray
def test_evaluate_in_a_fresh_process_is_quiet(
    digits_model: Path, digits_dataset: Path, tmp_path: Path
) -> None:
    # A real process: Ray's start-up, its C++ core worker and Ray Data all write to the
    # process's stderr, which the in-process CLI fixture cannot see.
    result = subprocess.run(
        cli_command(
            "evaluate",
            digits_model,
            "--data",
            digits_dataset,
            "--out",
            tmp_path / "report",
            "--gallery",
            "1",
        ),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "top-1 error" in result.stdout
    assert noise(result.stderr) == []


def test_ingest_and_predict_are_quiet(
    pomona, digits_folder: Path, digits_model: Path, tmp_path: Path
) -> None:
    result = pomona("ingest", digits_folder, tmp_path / "ds", "--image-size", "8")
    assert result.code == 0, result.err
    assert noise(result.err) == []
    result = pomona("predict", digits_model, next(digits_folder.glob("3/*.png")))
    assert result.code == 0, result.err
    assert result.err == ""
