"""Damage files for real: tests flip a byte on disk instead of mocking a checksum."""

from __future__ import annotations

import shutil
from pathlib import Path

from pomona.data.shards import read_manifest


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Invert one bit of the byte at ``offset`` (default: the middle of the file)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


def dataset_with_flipped_shard(dataset: Path, copy: Path, split: str = "train") -> str:
    """Copy ``dataset`` to ``copy`` and flip a byte in its first ``split`` shard.

    Returns:
        The damaged shard's path relative to the dataset, as the manifest names it.
    """
    shutil.copytree(dataset, copy)
    shard = read_manifest(copy).splits[split].shards[0].path
    flip_byte(copy / shard)
    return shard
