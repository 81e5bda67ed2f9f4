"""Where a sweep reads and writes: a dataset anywhere, its own directory on a filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomona.config import validate
from pomona.errors import ConfigError
from pomona.tune.config import SweepConfig
from pomona.tune.sweep import _share_cluster, check_sweep_dir


def sweep(data: str) -> SweepConfig:
    config = {"out": "S", "train": {"data": data, "num_workers": 1}, "space": {"seed": "grid(1)"}}
    return validate(SweepConfig, config, "sweep")


def test_the_sweep_directory_must_be_a_filesystem_directory(
    object_store: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"sweep --out store://b/s must be a local directory"):
        check_sweep_dir("store://b/s", resume=False)
    assert check_sweep_dir(f"file://{tmp_path}/s", resume=False) == tmp_path / "s"


def test_trials_get_the_dataset_as_a_uri_or_an_absolute_path(
    object_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _share_cluster(sweep("store://b/ds"), 4.0, 1).data == "store://b/ds"
    monkeypatch.chdir(tmp_path)
    assert _share_cluster(sweep("ds"), 4.0, 1).data == str(tmp_path / "ds")
