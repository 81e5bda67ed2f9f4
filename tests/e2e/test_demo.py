"""`pomona demo` runs the whole pipeline (the README's first command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.ray]


def test_demo_end_to_end(pomona, ray_session: None, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = pomona("demo", "--workdir", workdir, "--epochs", "1", "--workers", "1")
    assert result.code == 0, result.err
    for step in (
        "Fine-tune simple_cnn",
        "Evaluate on the test split",
        "Predict with the production",
        "Serve digits@production over HTTP",
    ):
        assert step in result.out
    assert "digits@production -> 1" in result.out
    assert result.out.count('{"model":"digits","version":1,"predictions":[{"label":') == 2
    # Series of Serve apps that ran earlier in this Ray session (other tests) may be listed too.
    requests = [line for line in result.out.splitlines() if "ray_pomona_requests_total{" in line]
    assert any('code="200"' in line and line.endswith(" 2.0") for line in requests), requests
    assert "(raylet)" not in result.out  # Serve stops without Ray's failed-task line
    report = json.loads((workdir / "report" / "report.json").read_text())
    assert report["count"] == 269
    assert (workdir / "registry" / "digits" / "versions" / "1" / "version.json").is_file()
    assert len(list((workdir / "explain").rglob("*.png"))) == 2
    assert "Search learning rate and batch size with Ray Tune" in result.out
    assert "registered digits:2 from sweep" in result.out
    assert (workdir / "sweep" / "best").is_symlink()

    again = pomona("demo", "--workdir", workdir)
    assert again.code == 2 and "--overwrite" in again.err
    (workdir / "mine.txt").write_text("keep me")
    refused = pomona("demo", "--workdir", workdir, "--overwrite")
    assert refused.code == 2 and "mine.txt" in refused.err
    assert (workdir / "mine.txt").read_text() == "keep me"
