"""Opening a dataset verifies the checksums of the shards about to be read."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.corrupt import dataset_with_flipped_shard

from pomona.data.shards import open_dataset
from pomona.errors import DatasetError


def test_a_clean_dataset_opens(digits_dataset: Path) -> None:
    assert open_dataset(digits_dataset, ["train", "val"]).num_classes == 10


def test_a_flipped_byte_is_refused_naming_the_shard(digits_dataset: Path, tmp_path: Path) -> None:
    shard = dataset_with_flipped_shard(digits_dataset, tmp_path / "ds", split="val")
    with pytest.raises(DatasetError) as raised:
        open_dataset(tmp_path / "ds", ["train", "val"])
    message = str(raised.value)
    assert f"val: {shard} checksum" in message
    assert "\n" not in message
    # Only the splits about to be read are checked.
    assert open_dataset(tmp_path / "ds", ["train", "test"]).num_classes == 10


def test_a_missing_shard_or_split_is_refused(digits_dataset: Path, tmp_path: Path) -> None:
    shard = dataset_with_flipped_shard(digits_dataset, tmp_path / "ds", split="test")
    (tmp_path / "ds" / shard).unlink()
    with pytest.raises(DatasetError, match=f"test: {shard} is missing"):
        open_dataset(tmp_path / "ds", ["test"])
    with pytest.raises(DatasetError, match="no rows in split 'holdout'"):
        open_dataset(tmp_path / "ds", ["holdout"])
