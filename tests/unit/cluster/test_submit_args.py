"""What `pomona submit` sends: the local command's arguments, checked, with paths made absolute."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomona.cli.submit import job_args, local_command
from pomona.cluster.submit import job_runtime_env, project_root
from pomona.errors import ClusterError, ConfigError

ROOT = project_root()


def test_relative_paths_become_absolute_and_other_flags_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--data", "ds", "--out=runs/r1", "--epochs", "2", "--workers", "2"]
    sent = job_args(local_command("train"), "train", args, ROOT)
    assert sent == ["--data", str(tmp_path / "ds"), f"--out={tmp_path / 'runs/r1'}",
                    "--epochs", "2", "--workers", "2"]  # fmt: skip


def test_absolute_paths_and_uris_are_sent_unchanged() -> None:
    args = ["--data", "/shared/ds", "--out", "s3://bucket/runs/r1"]
    assert job_args(local_command("train"), "train", args, ROOT) == args


def test_config_inside_the_project_is_sent_relative_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its relative paths (data: pomona-demo/dataset) are relative to this folder, as when run
    # here: sent as --set entries placed before the user's own, which still win.
    here = ROOT / "configs"
    monkeypatch.chdir(here)
    args = ["train-digits.yaml", "--epochs", "1", "--set", "out=mine"]
    sent = job_args(local_command("train"), "train", args, ROOT)
    assert sent == ["--set", f"data={here / 'pomona-demo/dataset'}",
                    "--set", f"out={here / 'pomona-demo/run'}",
                    "configs/train-digits.yaml", "--epochs", "1",
                    "--set", f"out={here / 'mine'}"]  # fmt: skip


def test_paths_in_set_become_absolute_and_only_path_values_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "simple_cnn").mkdir()  # a folder named like an architecture
    (tmp_path / "1").mkdir()
    args = ["--data", "1", "--workers", "1", "--model", "simple_cnn", "--set", "model.weights=1",
            "--set", "train.data=x", "--set", "epochs=1", "--out", "r"]  # fmt: skip
    sent = job_args(local_command("train"), "train", args, ROOT)
    assert sent == ["--data", str(tmp_path / "1"), "--workers", "1", "--model", "simple_cnn",
                    "--set", f"model.weights={tmp_path / '1'}",
                    "--set", f"train.data={tmp_path / 'x'}",
                    "--set", "epochs=1", "--out", str(tmp_path / "r")]  # fmt: skip


def test_config_outside_the_project_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("epochs: 1\n")
    with pytest.raises(ClusterError, match="outside the project"):
        job_args(local_command("train"), "train", [str(config)], ROOT)


def test_arguments_the_local_command_rejects_are_refused_before_submitting() -> None:
    with pytest.raises(ConfigError, match="pomona train: No such option: --bogus"):
        job_args(local_command("train"), "train", ["--data", "/d", "--bogus", "1"], ROOT)
    with pytest.raises(ConfigError, match="Invalid value for '--epochs'"):
        job_args(local_command("train"), "train", ["--epochs", "two"], ROOT)


def test_evaluate_keeps_registry_references_and_absolutises_model_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    common = ["--data", "/d", "--out", "/r"]
    command = local_command("evaluate")
    assert job_args(command, "evaluate", ["digits@production", *common], ROOT)[0] == (
        "digits@production"
    )
    assert job_args(command, "evaluate", ["run", *common], ROOT)[0] == str(tmp_path / "run")


def test_runtime_env_ships_the_checkout_and_its_package() -> None:
    env = job_runtime_env(ROOT)
    assert env["working_dir"] == str(ROOT)
    assert (ROOT / env["env_vars"]["PYTHONPATH"] / "pomona" / "__init__.py").is_file()
    assert {"/.venv/", "/.git/", "/data/"} <= set(env["excludes"])
