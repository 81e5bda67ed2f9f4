"""Unit tests are plain Python: a test that starts Ray, or uses one already running, fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.ray_guard import forbid_ray

from pomona.data.manifest import Preprocessing
from pomona.models import build_model, save_model

TINY_CLASSES = ["circle", "cross", "square"]


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with forbid_ray(monkeypatch) as attempts:
        yield
    if attempts:
        pytest.fail(f"a unit test {attempts[0]}; move it to tests/integration")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine the thread
    # hand-offs make every op ~100x slower (seconds per test instead of milliseconds).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=[1, 3], ids=["gray", "rgb"])
def tiny_model_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A simple_cnn on 8x8 images (classes :data:`TINY_CLASSES`) with BatchNorm statistics moved
    off their defaults, saved to disk."""
    channels = request.param
    torch.manual_seed(channels)
    model = build_model("simple_cnn", len(TINY_CLASSES), channels)
    model.train()
    model(torch.randn(8, channels, 8, 8))
    save_model(
        tmp_path / "model",
        model.eval(),
        architecture="simple_cnn",
        classes=TINY_CLASSES,
        preprocessing=Preprocessing(height=8, width=8, channels=channels),
    )
    return tmp_path / "model"


@pytest.fixture
def image_files(tmp_path: Path) -> list[Path]:
    """Five RGB PNGs of 20x14 pixels: preprocessing must resize and convert them."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(5):
        path = tmp_path / "images" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (14, 20, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
