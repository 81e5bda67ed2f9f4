"""``--use-gpu`` where the local Ray has no GPU: one ``error:`` line from every command that
takes it, not a wait for a GPU that never comes (Ray Train's Ctrl-C handler waited too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.local_cluster import pomona_cli

from pomona.cluster.runtime import free_ports

pytestmark = pytest.mark.e2e

NO_GPU = (
    "asks for GPUs but this machine's Ray has none: run without it, or on a machine with an "
    "NVIDIA GPU\n"
)


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["train", "--use-gpu"], "--use-gpu"),
        (["sweep", "--set", "train.use_gpu=true", "--space", "lr=choice(0.1)"], "train.use_gpu"),
    ],
    ids=["train", "sweep"],
)
def test_training_on_gpus_is_refused_where_ray_has_none(
    pomona, ray_session, digits_dataset: Path, tmp_path: Path, command: list[str], option: str
) -> None:
    out = tmp_path / "out"
    result = pomona(*command, "--data", digits_dataset, "--out", out, "--epochs", "1")
    assert result.code == 2, result.err
    assert result.err == f"error: {option} {NO_GPU}"
    assert not out.exists()


def test_evaluating_on_gpus_is_refused_where_ray_has_none(
    pomona, ray_session, digits_model: Path, digits_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = pomona("evaluate", digits_model, "--data", digits_dataset, "--out", out, "--use-gpu")
    assert result.code == 2, result.err
    # Under the progress bar's "starting Ray" line.
    assert result.err.endswith(f"\nerror: --use-gpu {NO_GPU}")
    assert not out.exists()


def test_serving_on_gpus_is_refused_where_ray_has_none(digits_model: Path, tmp_path: Path) -> None:
    from pomona.registry import Registry

    registry = tmp_path / "registry"
    Registry(registry).register(digits_model, "digits")
    api, metrics = free_ports(2)
    # A fresh process with a local Ray of its own, as `pomona serve` runs; CUDA hidden, so that
    # Ray finds no GPU on any machine.
    result = pomona_cli(
        "--registry", registry, "serve", "digits", "--use-gpu", "--port", api,
        "--metrics-port", metrics, env={"CUDA_VISIBLE_DEVICES": ""}, timeout_s=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: --use-gpu {NO_GPU}"
