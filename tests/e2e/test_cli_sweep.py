"""`pomona sweep` argument errors: one clear line, exit 2, and no Ray started."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomona.cli.session import session

pytestmark = pytest.mark.e2e

QUICK = ("--data", "d", "--out", "{tmp}/sweep")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (QUICK, "space: Field required"),
        ((*QUICK, "--space", "lr=choice(0.1, 0.2)"), "d is not a pomona dataset"),
        ((*QUICK, "--space", "lr=normal(0, 1)"), "unknown search space kind 'normal'"),
        ((*QUICK, "--space", "lr=loguniform(0, 1)"), "loguniform needs low > 0"),
        ((*QUICK, "--space", "loguniform(0.1, 1)"), "--space expects key=kind(args)"),
        ((*QUICK, "--space", "momentum=grid(0.5, 1.5)"), "space momentum=1.5"),
        ((*QUICK, "--space", "lrate=choice(0.1, 0.2)"), "'lrate' is not a training setting"),
        ((*QUICK, "--space", "lr=choice(0.1)", "--scheduler", "hyperband"), "scheduler.name"),
        ((*QUICK, "--space", "lr=choice(0.1)", "--register", "Bad Name"), "Bad Name"),
        (("--data", "d", "--out", "{tmp}/existing", "--space", "lr=choice(0.1)"), "already exists"),
        (("--resume", "{tmp}/existing"), "holds no sweep.yaml"),
        (("--resume", "{tmp}/existing", "--trials", "3"), "pass no settings"),
    ],
)
def test_sweep_errors(
    pomona, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    # The CLI reaches Ray only through session.connect: every error must come before it.
    monkeypatch.setattr(session, "connect", lambda: pytest.fail("the sweep connected to Ray"))
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "results.csv").write_text("trial\n")
    result = pomona("sweep", *(a.format(tmp=tmp_path) for a in args))
    assert result.code == 2, result.out
    assert message in result.err
    assert "Traceback" not in result.err
