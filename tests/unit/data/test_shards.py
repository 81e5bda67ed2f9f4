"""Shards: the image column's encoding, reading it back, and verification before reading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.corrupt import dataset_with_flipped_shard

from pomona.data.shards import (
    MANIFEST_FILE,
    image_array,
    open_dataset,
    read_manifest,
    write_shard,
)
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


def test_images_are_stored_as_fixed_size_binary(tmp_path: Path) -> None:
    """The pixels are one fixed-length Parquet value per row, not a list of bytes.

    Parquet stores a list (Arrow's fixed-shape tensor included) with a repetition level per
    element; decoding those made streaming 7x slower. This fails if the column goes back to one.
    """
    pixels = np.arange(5 * 4 * 3 * 2, dtype=np.uint8).reshape(5, 4, 3, 2)
    info = write_shard(
        tmp_path, "train/part-00000.parquet", pixels, [0, 1, 0, 1, 0], list("abaab"), list("vwxyz")
    )
    parquet = pq.ParquetFile(tmp_path / info.path)
    column = parquet.schema.column(parquet.schema.names.index("image"))
    assert column.physical_type == "FIXED_LEN_BYTE_ARRAY"
    assert column.max_repetition_level == 0
    assert column.length == 4 * 3 * 2
    table = parquet.read()
    assert table.schema.field("image").type == pa.binary(4 * 3 * 2)
    assert np.array_equal(image_array(table.column("image"), (4, 3, 2)), pixels)


def test_image_array_views_one_chunk_and_joins_several() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (6, 2, 2, 3), dtype=np.uint8)
    column = pa.array([p.tobytes() for p in pixels], type=pa.binary(12))
    view = image_array(column, (2, 2, 3))
    assert np.array_equal(view, pixels)
    assert view.ctypes.data == column.buffers()[1].address  # the column's own bytes, no copy
    sliced = pa.chunked_array([column.slice(4, 2), column.slice(1, 2)])
    assert np.array_equal(image_array(sliced, (2, 2, 3)), pixels[[4, 5, 1, 2]])


def test_image_array_refuses_another_encoding_or_shape() -> None:
    pixels = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    tensors = pa.FixedShapeTensorArray.from_numpy_ndarray(pixels)  # dataset format 1
    with pytest.raises(DatasetError, match=r"not fixed_size_binary\(12\) for images \(2, 2, 3\)"):
        image_array(tensors, (2, 2, 3))
    binary = pa.array([p.tobytes() for p in pixels], type=pa.binary(12))
    with pytest.raises(DatasetError, match=r"not fixed_size_binary\(48\)"):
        image_array(binary, (4, 4, 3))


def test_a_dataset_of_the_old_format_says_to_ingest_again(
    digits_dataset: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "old"
    shutil.copytree(digits_dataset, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["schema_version"] = 1
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError) as raised:
        open_dataset(copy, ["train"])
    message = str(raised.value)
    assert "\n" not in message
    assert "older pomona (dataset format 1" in message
    assert f"`pomona ingest {manifest['source']} {copy} --overwrite`" in message


def test_a_manifest_given_for_its_dataset_names_the_folder(digits_dataset: Path) -> None:
    for given, folder in [
        (f"{digits_dataset}/{MANIFEST_FILE}", str(digits_dataset)),
        (f"file://{digits_dataset}/{MANIFEST_FILE}/", f"file://{digits_dataset}"),
    ]:
        with pytest.raises(DatasetError) as raised:
            read_manifest(given)
        assert str(raised.value) == (
            f"{given} is a dataset's manifest: pass the dataset's folder, {folder}"
        )
