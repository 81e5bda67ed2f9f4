"""`pomona train` mistakes: one clear line, exit 2, found before Ray starts, nothing left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support.corrupt import dataset_with_flipped_shard

from pomona.cli.session import session
from pomona.data.shards import MANIFEST_FILE, read_manifest, write_manifest

pytestmark = pytest.mark.e2e


class Payload:
    """Something only a full unpickler could rebuild."""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "d"), "--out: Field required"),
        (("--data", "d", "--out", "{tmp}/run", "--model", "vgg"), "unknown architecture 'vgg'"),
        (("--data", "d", "--out", "{tmp}/run", "--set", "epochs=0"), "epochs"),
        (("--data", "d", "--out", "{tmp}/run", "--set", "lr"), "--set expects key=value"),
        (
            ("--data", "d", "--out", "{tmp}/run", "--workers", "4", "--batch-size", "2"),
            "--batch-size (2) must be >= --workers (4)",
        ),
        (("--data", "d", "--out", "{tmp}/existing"), "already exists; continue it with"),
        (("--resume", "{tmp}/empty"), "cannot resume: {tmp}/empty holds no config.yaml"),
        (("--data", "d", "--out", "{tmp}/existing/metrics.csv/run"), "is a file, so run directory"),
        (("--resume", "{tmp}/existing", "--out", "{tmp}/run"), "do not pass --out as well"),
        (("{tmp}/missing.yaml",), "config file"),
        (("--data", "{tmp}/nowhere", "--out", "{tmp}/run"), "is not a pomona dataset"),
        (("--data", "{tmp}/no_val", "--out", "{tmp}/run"), "no rows in split 'val'"),
        (("--data", "{tmp}/format_1", "--out", "{tmp}/run"), "ingest the images again: `pomona"),
        (("--data", "d", "--out", "{tmp}/run", "--head", "old"), "--head: Input should be"),
        (("--data", "d", "--out", "{tmp}/run", "--lr", "-1"), "--lr: Input should be greater"),
        (("--data", "d", "--out", "{tmp}/run", "--head", "keep"), "--head keep needs --weights"),
    ],
)
def test_train_errors(
    pomona,
    ray_forbidden: None,
    digits_dataset: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "metrics.csv").write_text("epoch\n")
    _without_val(digits_dataset, tmp_path / "no_val")
    _of_format_1(digits_dataset, tmp_path / "format_1")
    result = pomona("train", *(a.format(tmp=tmp_path) for a in args))
    assert result.code == 2, result.out
    assert message.format(tmp=tmp_path) in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "run").exists()


def _without_val(dataset: Path, out: Path) -> None:
    """A copy of ``dataset``'s manifest whose validation split is empty."""
    manifest = read_manifest(dataset)
    val = manifest.splits["val"]
    manifest.splits["train"].rows += val.rows
    manifest.splits["val"] = val.model_copy(update={"rows": 0, "shards": []})
    out.mkdir()
    write_manifest(out, manifest)


def _of_format_1(dataset: Path, out: Path) -> None:
    """A copy of ``dataset`` whose manifest says an older pomona wrote it."""
    out.mkdir()
    manifest = json.loads((dataset / MANIFEST_FILE).read_text())
    (out / MANIFEST_FILE).write_text(json.dumps({**manifest, "schema_version": 1}))


def test_weights_refused_by_weights_only_fail_before_ray(
    pomona, ray_forbidden: None, digits_dataset: Path, tmp_path: Path
) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(1), "payload": Payload()}, evil)
    result = pomona("train", "--data", digits_dataset, "--out", tmp_path / "run", "--weights", evil)
    assert result.code == 2
    assert result.err.startswith("error: ")  # no progress bar: nothing started
    assert len(result.err.strip().splitlines()) == 1
    assert "weights_only=True" in result.err and "Payload" in result.err
    assert not (tmp_path / "run").exists()


def test_a_relative_weights_path_that_does_not_exist_fails_before_ray(
    pomona, ray_forbidden: None, digits_dataset: Path, tmp_path: Path
) -> None:
    result = pomona(
        "train", "--data", digits_dataset, "--out", tmp_path / "run", "--weights", "nope.pt"
    )
    assert result.code == 2
    assert "model 'nope.pt' not found" in result.err


def test_train_and_evaluate_refuse_a_flipped_shard_byte(
    pomona, ray_forbidden: None, digits_dataset: Path, digits_model: Path, tmp_path: Path
) -> None:
    data = tmp_path / "ds"
    shard = dataset_with_flipped_shard(digits_dataset, data, split="test")
    train_shard = dataset_with_flipped_shard(digits_dataset, tmp_path / "ds2", split="train")

    evaluated = pomona("evaluate", digits_model, "--data", data, "--out", tmp_path / "report")
    assert evaluated.code == 2
    assert f"test: {shard} checksum" in error_line(evaluated.err)
    assert not (tmp_path / "report").exists()

    trained = pomona("train", "--data", tmp_path / "ds2", "--out", tmp_path / "run")
    assert trained.code == 2
    assert f"train: {train_shard} checksum" in error_line(trained.err)

    # Training reads train and val only, so the damaged test shard does not stop it here:
    # it gets past the checks and reaches the (refused) Ray start.
    with pytest.raises(pytest.fail.Exception, match="Ray was started"):
        pomona("train", "--data", data, "--out", tmp_path / "run")


def error_line(stderr: str) -> str:
    """The one ``error:`` line of a failed command (a progress bar may precede it)."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.ray
def test_a_run_that_fails_before_its_first_epoch_leaves_no_run_dir(
    pomona,
    ray_session: None,
    digits_dataset: Path,
    digits_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray.train

    weights = tmp_path / "weights"
    shutil.copytree(digits_model, weights)
    run = tmp_path / "run"
    args = ("train", "--data", digits_dataset, "--out", run, "--workers", "1", "--epochs", "1")
    connect = session.connect

    def connect_then_lose_the_weights() -> None:
        # The weights pass the driver's check, then vanish before the worker reads them.
        connect()
        (weights / "model.safetensors").unlink()

    monkeypatch.setattr(session, "connect", connect_then_lose_the_weights)
    # Not a mistake found up front: Ray Train's error keeps its traceback.
    with pytest.raises(ray.train.TrainingFailedError, match=r"model\.safetensors is missing"):
        pomona(*args, "--weights", weights, "--set", "max_failures=0")
    assert not run.exists()

    monkeypatch.setattr(session, "connect", connect)
    result = pomona(*args)  # the same --out works at once
    assert result.code == 0, result.err
    assert (run / "model.safetensors").is_file()
