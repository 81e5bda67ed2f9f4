"""`pomona sweep` from the command line: argument errors (one clear line, exit 2, no Ray), the
optuna searcher, what `--register` records in the version, and a quiet terminal."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from support.cli import cli_command, cli_env
from support.fake_models import make_model_dir

from pomona.cli.session import session
from pomona.cluster.runtime import LOCAL_RAY_ENV
from pomona.registry import Registry, SweepTrial

pytestmark = pytest.mark.e2e

QUICK = ("--data", "d", "--out", "{tmp}/sweep")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (QUICK, "--space: Field required"),
        ((*QUICK, "--space", "lr=choice(0.1, 0.2)"), "d is not a pomona dataset"),
        ((*QUICK, "--space", "lr=normal(0, 1)"), "unknown search space kind 'normal'"),
        ((*QUICK, "--space", "lr=loguniform(0, 1)"), "loguniform needs low > 0"),
        ((*QUICK, "--space", "loguniform(0.1, 1)"), "--space expects key=kind(args)"),
        ((*QUICK, "--space", "momentum=grid(0.5, 1.5)"), "space momentum=1.5"),
        ((*QUICK, "--space", "lrate=choice(0.1, 0.2)"), "'lrate' is not a training setting"),
        (
            (*QUICK, "--space", "lr=choice(0.1)", "--scheduler", "hyperband"),
            "--scheduler: Input should be",
        ),
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


def test_registry_show_displays_the_sweep_and_settings_of_a_version(pomona, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    origin = SweepTrial(
        sweep="/sweeps/digits",
        trial="6d1e8_00003",
        settings={"learning_rate": 0.236912, "batch_size": 64},
        metric="val_error",
        value=0.0855,
    )
    registry.register(make_model_dir(tmp_path / "model", seed=1), "digits", sweep=origin)
    registry.register(make_model_dir(tmp_path / "other", seed=2), "digits")

    shown = pomona("registry", "--registry", registry.uri, "show", "digits:1")
    assert shown.code == 0, shown.err
    rows = [line.split(None, 1) for line in shown.out.splitlines()]
    rows = {row[0]: row[1].strip() for row in rows if row[0] in ("sweep", "settings")}
    assert rows == {
        "sweep": "/sweeps/digits trial 6d1e8_00003 (val_error 0.0855)",
        "settings": "learning_rate=0.2369, batch_size=64",
    }
    plain = pomona("registry", "--registry", registry.uri, "show", "digits:2")
    assert plain.code == 0, plain.err
    assert "sweep" not in plain.out and "settings" not in plain.out


@pytest.mark.ray
def test_an_optuna_sweep_in_a_fresh_process_is_quiet_and_registers_its_best_trial(
    digits_dataset: Path, tmp_path: Path
) -> None:
    import optuna

    sweep_dir, registry = tmp_path / "sweep", tmp_path / "registry"
    # Two trials in flight keep about 20 Ray worker processes alive; with Ray's default startup
    # concurrency (the 2 CPUs) the raylet then prints a worker-pool warning on the driver's
    # stdout. pomona's local Ray defaults must prevent it, so they are left to the CLI here.
    env = {key: value for key, value in cli_env().items() if key not in LOCAL_RAY_ENV}
    args = [
        "sweep", "--data", digits_dataset, "--out", sweep_dir, "--model", "simple_cnn",
        "--epochs", "1", "--workers", "1", "--concurrent", "2", "--trials", "2",
        "--scheduler", "fifo", "--searcher", "optuna", "--seed", "3",
        "--space", "lr=loguniform(0.01, 0.3)", "--space", "momentum=uniform(0.5, 0.9)",
        "--register", "digits", "--registry", registry,
    ]  # fmt: skip
    result = subprocess.run(
        cli_command(*args), env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "(raylet)" not in result.stdout + result.stderr  # Ray said nothing ...
    assert [line for line in result.stdout.splitlines() if "WARNING" in line] == []
    assert "A new study created" not in result.stderr  # ... nor did Optuna
    with open(sweep_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["completed", "completed"]

    # Optuna's seeded TPE sampler drew the first trial's settings (its first draws are random,
    # from its own generator), not Tune's random search.
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    expected = study.ask(
        {
            "learning_rate": optuna.distributions.FloatDistribution(0.01, 0.3, log=True),
            "momentum": optuna.distributions.FloatDistribution(0.5, 0.9),
        }
    ).params
    first = rows[0]
    assert float(first["learning_rate"]) == pytest.approx(expected["learning_rate"])
    assert float(first["momentum"]) == pytest.approx(expected["momentum"])

    best = min(rows, key=lambda row: float(row["best_val_error"]))
    version = Registry(registry).get("digits:1")
    assert version.sweep is not None
    assert (version.sweep.sweep, version.sweep.trial) == (str(sweep_dir), best["trial"])
    assert version.sweep.settings == {
        "learning_rate": float(best["learning_rate"]),
        "momentum": float(best["momentum"]),
    }
    assert version.sweep.value == pytest.approx(float(best["best_val_error"]))
