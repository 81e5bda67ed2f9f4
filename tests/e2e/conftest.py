"""Run the ``pomona`` CLI in-process, capturing its output and exit code."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from pomona.cli import main


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
