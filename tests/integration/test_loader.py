from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray.data
import torch

from pomona.data.loader import read_split, torch_batches
from pomona.data.shards import image_array, read_manifest

pytestmark = pytest.mark.ray


def test_batches_are_normalised_tensors(ray_session: None, digits_dataset: Path) -> None:
    manifest = read_manifest(digits_dataset)
    spec = manifest.preprocessing
    batches = list(torch_batches(read_split(digits_dataset, "val"), 32, spec))
    total = sum(len(b["label"]) for b in batches)
    assert total == manifest.splits["val"].rows
    first = batches[0]
    assert first["image"].shape == (32, 1, 16, 16) and first["image"].dtype == torch.float32
    assert first["label"].dtype == torch.int64
    # Same values as normalising the stored uint8 pixels by hand (row order may differ).
    images = torch.cat([b["image"] for b in batches]).numpy()
    labels = torch.cat([b["label"] for b in batches]).numpy()
    raw, raw_labels = [], []
    for shard in manifest.splits["val"].shards:
        table = pq.read_table(digits_dataset / shard.path)
        raw.append(image_array(table.column("image"), manifest.image_shape))
        raw_labels += table.column("label").to_pylist()
    expected = np.moveaxis((np.concatenate(raw) / 255 - spec.mean[0]) / spec.std[0], -1, 1)

    def canonical(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rows = np.concatenate([y[:, None].astype(np.float32), x.reshape(len(x), -1)], axis=1)
        return rows[np.lexsort(rows.T[::-1])]

    assert np.allclose(
        canonical(images, labels), canonical(expected, np.array(raw_labels)), atol=1e-5
    )


def test_batches_are_augmented_before_normalising(ray_session: None, digits_dataset: Path) -> None:
    spec = read_manifest(digits_dataset).preprocessing
    seen: list[torch.Tensor] = []

    def blank(pixels: torch.Tensor) -> torch.Tensor:
        seen.append(pixels)
        return torch.zeros_like(pixels)

    batches = list(torch_batches(read_split(digits_dataset, "val"), 32, spec, augment=blank))
    assert len(seen) == len(batches) and seen[0].dtype == torch.uint8
    black = -spec.mean[0] / spec.std[0]
    assert all(torch.allclose(b["image"], torch.full_like(b["image"], black)) for b in batches)


def test_cached_split_reads_once(ray_session: None, digits_dataset: Path) -> None:
    cached = read_split(digits_dataset, "val", cache=True)
    assert "MapBatches" not in str(cached)
    rows = cached.take_batch(1000, batch_format="numpy")
    plain = read_split(digits_dataset, "val").take_batch(1000, batch_format="numpy")
    assert sorted(rows["label"].tolist()) == sorted(plain["label"].tolist())


def test_streamed_split_reads_one_block_per_shard(
    ray_session: None, digits_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = ray.data.DataContext.get_current()
    default_reader = context.use_datasource_v2
    manifest = read_manifest(digits_dataset)
    dataset = read_split(digits_dataset, "train", manifest=manifest)
    assert context.use_datasource_v2 == default_reader  # the switch is not left behind
    # The reader lists the files once, when the dataset is built, not on every epoch.
    dataset.explain()
    plan = capsys.readouterr().out
    assert "ReadParquet" in plan and "ListFiles" not in plan
    # The image column is decoded inside the read tasks, not in a stage of its own.
    assert "ReadParquet->MapBatches(_decode_images)" in plan
    shards = manifest.splits["train"].shards
    assert len(shards) > 1
    blocks = dataset.materialize()
    assert blocks.num_blocks() == len(shards)
    assert blocks.count() == manifest.splits["train"].rows
