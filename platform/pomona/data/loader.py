"""Ray Data access to an ingested dataset, for training workers and batch inference.

Shards already hold decoded, resized uint8 pixels, so reading is cheap: the read tasks turn each
shard's fixed-size binary image column into a uint8 ``(N, H, W, C)`` tensor column without
copying it (:func:`pomona.data.shards.image_array`), and every later stage sees that.
:func:`torch_batches` moves uint8 batches to the consuming device, augments them there if asked
(:mod:`pomona.data.augment`, from a seeded generator) and normalises them to float last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import ray.data
import torch

from pomona.data.manifest import Manifest, Preprocessing
from pomona.data.shards import DatasetDir, image_array, read_manifest, shard_paths
from pomona.data.tensors import to_model_input
from pomona.location import as_location


def read_split(
    dataset_dir: DatasetDir,
    split: str,
    *,
    manifest: Manifest | None = None,
    columns: tuple[str, ...] = ("image", "label"),
    cache: bool = False,
) -> ray.data.Dataset:
    """A Ray Dataset over one split's shards.

    Args:
        dataset_dir: the ingested dataset directory: a local path, or a URI that every node
            reads itself (the filesystem travels with the read tasks).
        split: ``train``, ``val`` or ``test``.
        manifest: the already-read manifest (read from ``dataset_dir`` when None).
        columns: columns to read; ``path`` and ``label_name`` are there for reports.
        cache: read the split now and keep it in Ray's object store (for splits read many
            times, such as once per training epoch, that fit in memory).

    Raises:
        DatasetError: not a dataset, or the split has no rows.
    """
    manifest = manifest or read_manifest(dataset_dir)
    location = as_location(dataset_dir)
    paths = shard_paths(location, manifest, split)
    dataset = _read_shards(paths, list(columns), manifest.image_shape, location.filesystem)
    # Rows in the shards' order, not in whichever order read tasks finish: a training run then
    # sees the same data order, and repeats exactly, with the same seed.
    dataset.context.execution_options.preserve_order = True
    if cache:
        # Read once into Ray's object store: each later epoch iterates those blocks instead of
        # decoding the Parquet files again (3-5x faster per epoch, benchmarks/scale.py).
        dataset = dataset.materialize()
    return dataset


def _read_shards(
    paths: list[str],
    columns: list[str],
    image_shape: tuple[int, int, int],
    filesystem: pafs.FileSystem,
) -> ray.data.Dataset:
    """The shards as a dataset of one block per shard, with footers read once, here.

    Ray Data 2.60's default Parquet reader (DataSource V2) lists the files again on every
    execution, that is every epoch of a streamed split, by starting
    ``RAY_DATA_PARQUET_FOOTER_NUM_ACTORS`` (32) footer-reading actors: 1-2 s before the first
    batch on 2 cores, more under load. The V1 reader (``DataContext.use_datasource_v2``, which
    Ray documents as the switch between the two) reads the footers once on the driver; each
    epoch then starts with the read tasks. One block per shard (ingest writes shards of
    ``shard_rows``, 1,024 rows by default) instead of Ray's default of splitting each read into
    ~200 blocks in all: batches no longer straddle blocks of ~80 rows (measured 1.4x).

    The image column is decoded in a ``map_batches`` stage that Ray fuses into the read tasks
    (one task reads, decodes and emits a block), a whole block per call.
    """
    context = ray.data.DataContext.get_current()
    use_v2 = context.use_datasource_v2
    context.use_datasource_v2 = False  # chosen when the plan is built; restored at once
    try:
        dataset = ray.data.read_parquet(
            paths, filesystem=filesystem, columns=columns, override_num_blocks=len(paths)
        )
    finally:
        context.use_datasource_v2 = use_v2
    if "image" not in columns:
        return dataset
    return dataset.map_batches(
        _decode_images,
        fn_kwargs={"image_shape": image_shape},
        batch_size=None,
        batch_format="pyarrow",
        zero_copy_batch=True,
    )


def _decode_images(batch: pa.Table, image_shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Ray Data stage: a batch of shard rows with the image column as uint8 NHWC pixels."""
    return {
        name: image_array(column, image_shape) if name == "image" else column.to_numpy()
        for name, column in zip(batch.column_names, batch.columns, strict=True)
    }


def torch_batches(
    data: ray.data.Dataset | ray.data.DataIterator,
    batch_size: int,
    spec: Preprocessing,
    device: torch.device | str = "cpu",
    *,
    shuffle_buffer: int | None = None,
    seed: int | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield ``{"image": float32 NCHW, "label": int64}`` batches normalised per ``spec``.

    uint8 pixels travel to ``device`` and are normalised there (4x less to copy than floats).

    Args:
        data: a dataset, or a training worker's shard from ``ray.train.get_dataset_shard``.
        batch_size: rows per batch (this worker's share of the global batch).
        spec: the preprocessing recorded in the manifest or model card.
        device: where the tensors should live.
        shuffle_buffer: rows kept for a local shuffle (training); None keeps the order.
        seed: seed of the local shuffle.
        augment: applied to each batch's uint8 pixels on ``device`` before they are
            normalised (training: :func:`pomona.data.augment.augment_batch`).
    """
    batches = data.iter_torch_batches(
        batch_size=batch_size,
        dtypes={"image": torch.uint8, "label": torch.int64},
        device=device,
        local_shuffle_buffer_size=shuffle_buffer,
        local_shuffle_seed=seed,
        prefetch_batches=2,
    )
    for batch in batches:
        pixels = batch["image"] if augment is None else augment(batch["image"])
        yield {"image": to_model_input(pixels, spec), "label": batch["label"]}
