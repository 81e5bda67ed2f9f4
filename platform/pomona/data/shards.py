"""Parquet shards and the manifest: write them, read them back, verify their checksums.

Shards and the manifest are written to a local directory (ingest stages remote datasets
locally); everything that reads them takes a local path or a URI
(:func:`pomona.location.as_location`).

A shard has the columns ``image`` (Arrow fixed-shape uint8 tensor, height x width x channels),
``label`` (int64 class index), ``label_name`` (str) and ``path`` (source file relative to SRC).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from pomona.config import format_validation_error
from pomona.data.manifest import Manifest, ShardInfo
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
            "image": pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(pixels)),
            "label": pa.array(labels, type=pa.int64()),
            "label_name": pa.array(label_names, type=pa.string()),
            "path": pa.array(paths, type=pa.string()),
        }
    )
    target = dataset_dir / relative_path
    target.parent.mkdir(parents=True, exist_ok=True)
    # Images are already compact uint8; zstd keeps shards small without slowing reads much.
    pq.write_table(table, target, compression="zstd")
    return ShardInfo(path=relative_path, rows=len(labels), sha256=sha256_file(target))


def write_manifest(dataset_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (it is the dataset's completion marker)."""
    atomic_write_text(dataset_dir / MANIFEST_FILE, manifest.model_dump_json(indent=2) + "\n")


def read_manifest(dataset_dir: DatasetDir) -> Manifest:
    """Load and validate a dataset's manifest.

    Raises:
        ConfigError: ``dataset_dir`` is a URI pyarrow cannot open.
        DatasetError: the directory is not an ingested pomona dataset or the manifest is invalid.
    """
    path = as_location(dataset_dir) / MANIFEST_FILE
    if not path.is_file():
        raise DatasetError(
            f"{dataset_dir} is not a pomona dataset (no {MANIFEST_FILE}); create one with "
            "`pomona ingest SRC OUT`"
        )
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise DatasetError(format_validation_error(error, str(path))) from None


def shard_paths(dataset_dir: DatasetDir, manifest: Manifest, split: str) -> list[str]:
    """Paths of a split's shards inside the dataset's filesystem (absolute for local ones).

    Read them with ``filesystem=as_location(dataset_dir).filesystem``.

    Raises:
        DatasetError: the split does not exist or is empty.
    """
    info = manifest.splits.get(split)
    if info is None or not info.shards:
        raise DatasetError(
            f"dataset {dataset_dir} has no rows in split {split!r}; "
            f"splits with data: {[s for s, i in manifest.splits.items() if i.rows]}"
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
