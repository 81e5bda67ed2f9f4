"""A model trained in-process on the digits dataset, for the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from pomona.data.shards import MANIFEST_FILE, image_array, read_manifest, shard_paths
from pomona.data.tensors import to_model_input
from pomona.models import build_model, save_model
from pomona.storage import sha256_file


@pytest.fixture(scope="session")
def digits_model(digits_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simple_cnn trained in-process with plain torch (no Ray Train) on the digits train split.

    100 steps (about 3 s) reach about 92% test accuracy (7 mistakes of 90 when written; which
    ones depends on float rounding, e.g. torch's choice of convolution kernel): good enough to
    name most digits, with mistakes left for the report's gallery.
    """
    manifest = read_manifest(digits_dataset)
    spec = manifest.preprocessing
    table = pq.read_table(
        shard_paths(digits_dataset, manifest, "train"), columns=["image", "label"]
    )
    pixels = torch.from_numpy(image_array(table.column("image"), manifest.image_shape).copy())
    labels = torch.tensor(table.column("label").to_pylist())
    threads = torch.get_num_threads()
    # One thread: tiny batches gain nothing from more, and the machine is shared.
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model("simple_cnn", manifest.num_classes, spec.channels)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(100):
            batch = torch.randint(len(labels), (32,))
            loss = F.cross_entropy(model(to_model_input(pixels[batch], spec)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("models") / "digits-run"
    save_model(
        out,
        model.eval(),
        architecture="simple_cnn",
        classes=manifest.classes,
        preprocessing=spec,
        dataset_sha256=sha256_file(digits_dataset / MANIFEST_FILE),
    )
    return out
