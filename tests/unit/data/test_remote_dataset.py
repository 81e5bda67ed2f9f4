"""A dataset in an object store: built locally, uploaded manifest last, read and verified there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.corrupt import flip_byte
from test_ingest import SPEC, make_folder

from pomona.data.ingest import IngestConfig, ingest
from pomona.data.shards import MANIFEST_FILE, open_dataset, read_manifest, shard_paths
from pomona.errors import DatasetError
from pomona.location import as_location


def test_ingest_to_an_object_store_then_read_and_verify_there(
    object_store: Path, tmp_path: Path
) -> None:
    src = make_folder(tmp_path / "src", per_class=10)
    local = tmp_path / "local"
    ingest(IngestConfig(src=src, out=local, preprocessing=SPEC, workers=1, seed=3))
    manifest = ingest(
        IngestConfig(src=src, out="store://bucket/ds", preprocessing=SPEC, workers=1, seed=3)
    )
    stored = object_store / "bucket" / "ds"
    # The same dataset as a local ingest, byte for byte, and no staging left in the store.
    assert sorted(p.relative_to(stored) for p in stored.rglob("*")) == sorted(
        p.relative_to(local) for p in local.rglob("*")
    )
    for split, info in manifest.splits.items():
        for shard in info.shards:
            assert (stored / shard.path).read_bytes() == (local / shard.path).read_bytes(), split
    assert open_dataset("store://bucket/ds", ["train", "val"]) == read_manifest(stored)
    location = as_location("store://bucket/ds")
    table = pq.read_table(shard_paths(location, manifest, "train"), filesystem=location.filesystem)
    assert table.num_rows == manifest.splits["train"].rows

    flip_byte(stored / manifest.splits["val"].shards[0].path)
    with pytest.raises(DatasetError, match=r"dataset store://bucket/ds does not match"):
        open_dataset("store://bucket/ds", ["val"])


def test_an_existing_remote_dataset_is_replaced_only_with_overwrite(
    object_store: Path, tmp_path: Path
) -> None:
    src = make_folder(tmp_path / "src")
    config = IngestConfig(src=src, out="store://b/ds", preprocessing=SPEC, workers=1)
    ingest(config)
    stray = object_store / "b" / "ds" / "train" / "part-99999.parquet"
    shutil.copyfile(object_store / "b" / "ds" / MANIFEST_FILE, stray)
    with pytest.raises(DatasetError, match=r"store://b/ds already exists; pass --overwrite"):
        ingest(config)
    ingest(config.model_copy(update={"overwrite": True}))
    assert not stray.exists()  # the old tree went before the new one was uploaded
    assert read_manifest("store://b/ds").ingested == 12


def test_a_remote_folder_without_manifest_is_not_a_dataset(object_store: Path) -> None:
    as_location("store://b/half/train/part-00000.parquet").write_text("left by a killed upload")
    with pytest.raises(DatasetError, match=r"store://b/half is not a pomona dataset"):
        read_manifest("store://b/half")
