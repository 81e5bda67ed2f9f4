"""Parquet shards and the manifest: write them, read them back, verify their checksums.

Shards and the manifest are written to a local directory (ingest stages remote datasets
locally); everything that reads them takes a local path or a URI
(:func:`pomona.location.as_location`).

A shard has the columns ``image`` (one ``fixed_size_binary(H*W*C)`` value per row: the uint8
pixels, height x width x channels, in C order; the shape is the manifest's ``image_shape``),
``label`` (int64 class index), ``label_name`` (str) and ``path`` (source file relative to SRC).

Why not Arrow's fixed-shape tensor type: Parquet stores it as a list of uint8 per row, with a
repetition level for every byte, and decoding those levels cost 7x the read of the same pixels as
fixed-size binary (benchmarks/RESULTS.md, section 5). Every reader turns the column back into a
uint8 array with :func:`image_array`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from pomona.config import format_validation_error
from pomona.data.manifest import SCHEMA_VERSION, Manifest, ShardInfo
from pomona.errors import DatasetError
from pomona.location import Location, as_location
from pomona.storage import atomic_write_text, sha256_file

#: A dataset directory as a local path or a URI.
DatasetDir = str | os.PathLike[str] | Location

MANIFEST_FILE = "manifest.json"
REJECTED_FILE = "rejected.csv"


def write_shard(
    dataset_dir: Path,
    relative_path: str,
    pixels: np.ndarray,
    labels: Sequence[int],
    label_names: Sequence[str],
    paths: Sequence[str],
) -> ShardInfo:
    """Write one shard under ``dataset_dir`` and return its manifest entry (rows, sha256)."""
    table = pa.table(
        {
            "image": _image_column(pixels),
            "label": pa.array(labels, type=pa.int64()),
            "label_name": pa.array(label_names, type=pa.string()),
            "path": pa.array(paths, type=pa.string()),
        }
    )
    target = dataset_dir / relative_path
    target.parent.mkdir(parents=True, exist_ok=True)
    # Images are already compact uint8; zstd keeps shards small without slowing reads much. No
    # dictionary for the pixels: no two rows repeat, and each value is a whole image.
    pq.write_table(table, target, compression="zstd", use_dictionary=["label", "label_name"])
    return ShardInfo(path=relative_path, rows=len(labels), sha256=sha256_file(target))


def _image_column(pixels: np.ndarray) -> pa.FixedSizeBinaryArray:
    """uint8 ``(N, H, W, C)`` pixels as one fixed-size binary value per row (no copy)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    width = math.prod(pixels.shape[1:])
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(pixels), [None, pa.py_buffer(pixels)]
    )


def image_array(column: pa.Array | pa.ChunkedArray, shape: Sequence[int]) -> np.ndarray:
    """A shard's ``image`` column as uint8 pixels ``(N, H, W, C)``.

    A view of the column's buffer, not a copy, when the column is one chunk, as a shard's is
    (copy it before writing into it); several chunks are concatenated.

    Args:
        column: the ``image`` column of a shard, or of a batch read from shards.
        shape: the stored image shape, height x width x channels (``Manifest.image_shape``).

    Raises:
        DatasetError: the column is not ``fixed_size_binary(H*W*C)`` for ``shape``.
    """
    width = math.prod(shape)
    if column.type != pa.binary(width):
        raise DatasetError(
            f"the image column has type {column.type}, not fixed_size_binary({width}) for "
            f"images {tuple(shape)}; ingest the images again with this pomona"
        )
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    arrays = [
        np.frombuffer(
            chunk.buffers()[1], np.uint8, count=len(chunk) * width, offset=chunk.offset * width
        ).reshape(len(chunk), *shape)
        for chunk in chunks
    ]
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays) if arrays else np.empty((0, *shape), np.uint8)


def write_manifest(dataset_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (it is the dataset's completion marker)."""
    atomic_write_text(dataset_dir / MANIFEST_FILE, manifest.model_dump_json(indent=2) + "\n")


def read_manifest(dataset_dir: DatasetDir) -> Manifest:
    """Load and validate a dataset's manifest.

    Raises:
        ConfigError: ``dataset_dir`` is a URI pyarrow cannot open.
        DatasetError: the directory is not an ingested pomona dataset or the manifest is invalid.
    """
    location = as_location(dataset_dir)
    path = location / MANIFEST_FILE
    if not path.is_file():
        if location.name == MANIFEST_FILE and location.is_file():
            head = str(dataset_dir).rstrip("/").removesuffix(MANIFEST_FILE)
            folder = head.rstrip("/") or ("/" if head else ".")
            raise DatasetError(
                f"{dataset_dir} is a dataset's manifest: pass the dataset's folder, {folder}"
            )
        raise DatasetError(
            f"{dataset_dir} is not a pomona dataset (no {MANIFEST_FILE}); create one with "
            "`pomona ingest SRC OUT`"
        )
    text = path.read_text()
    _check_format(dataset_dir, text)
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as error:
        raise DatasetError(format_validation_error(error, str(path))) from None


def _check_format(dataset_dir: DatasetDir, text: str) -> None:
    """Refuse a manifest of another dataset format on one line that says how to get this one.

    Older datasets are not read: their image column is the slow encoding this format replaced,
    and ingesting again is one command. Anything else wrong is left to validation.
    """
    try:
        raw = json.loads(text)
    except ValueError:
        return
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int) or version == SCHEMA_VERSION:
        return
    newer = "a newer" if version > SCHEMA_VERSION else "an older"
    raise DatasetError(
        f"{dataset_dir} was written by {newer} pomona (dataset format {version}; this one reads "
        f"format {SCHEMA_VERSION}); ingest the images again: "
        f"`pomona ingest {raw.get('source', 'SRC')} {dataset_dir} --overwrite`"
    )


def shard_paths(dataset_dir: DatasetDir, manifest: Manifest, split: str) -> list[str]:
    """Paths of a split's shards inside the dataset's filesystem (absolute for local ones).

    Read them with ``filesystem=as_location(dataset_dir).filesystem``.

    Raises:
        DatasetError: the split does not exist or is empty.
    """
    info = manifest.splits.get(split)
    if info is None or not info.shards:
        raise DatasetError(
            f"dataset {dataset_dir} has no rows in split {split!r}; the splits with rows: "
            f"{', '.join(s for s, i in manifest.splits.items() if i.rows) or 'none'}"
        )
    location = as_location(dataset_dir)
    return [(location / shard.path).path for shard in info.shards]


def verify(
    dataset_dir: DatasetDir, manifest: Manifest, splits: Sequence[str] | None = None
) -> list[str]:
    """Check shards exist with their recorded sha256; return the problems (empty if none).

    Args:
        dataset_dir: the ingested dataset directory.
        manifest: its manifest.
        splits: the splits to check; None checks all of them.
    """
    location = as_location(dataset_dir)
    problems = []
    for split, info in manifest.splits.items():
        if splits is not None and split not in splits:
            continue
        for shard in info.shards:
            try:
                actual = (location / shard.path).sha256()
            except FileNotFoundError:
                problems.append(f"{split}: {shard.path} is missing")
                continue
            if actual != shard.sha256:
                problems.append(
                    f"{split}: {shard.path} checksum {actual[:12]} != manifest {shard.sha256[:12]}"
                )
    return problems


def open_dataset(dataset_dir: DatasetDir, splits: Sequence[str]) -> Manifest:
    """Read a dataset's manifest and verify the shards of ``splits`` before anything reads them.

    Training and evaluation call this before Ray starts: a shard that changed since ingest (a
    flipped bit that still parses would otherwise train silently) fails at once, on one line.

    Args:
        dataset_dir: the ingested dataset directory (a local path or a URI).
        splits: the splits about to be read; each must exist and hold rows.

    Returns:
        The manifest.

    Raises:
        DatasetError: not a dataset, a split is missing or empty, or a shard of ``splits`` is
            missing or differs from its recorded sha256 (the first such shard is named).
    """
    location = as_location(dataset_dir)
    manifest = read_manifest(location)
    for split in splits:
        shard_paths(location, manifest, split)  # raises for a missing or empty split
    problems = verify(location, manifest, splits)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DatasetError(
            f"dataset {dataset_dir} does not match its manifest: {problems[0]}{more}; "
            "ingest the images again"
        )
    return manifest
