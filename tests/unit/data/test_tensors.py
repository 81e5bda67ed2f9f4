"""Normalisation of uint8 pixels into network input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pomona.data.manifest import Preprocessing
from pomona.data.tensors import to_model_input


@pytest.mark.parametrize("channels", [1, 3])
def test_pixels_become_normalised_contiguous_nchw(channels: int) -> None:
    spec = Preprocessing(height=5, width=7, channels=channels)
    pixels = np.random.default_rng(channels).integers(0, 256, (4, 5, 7, channels), dtype=np.uint8)
    before = pixels.copy()
    images = to_model_input(torch.from_numpy(pixels), spec)
    expected = (pixels / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    assert images.dtype == torch.float32 and images.is_contiguous()
    assert images.shape == (4, channels, 5, 7)
    assert np.allclose(images.numpy(), np.moveaxis(expected, -1, 1), atol=1e-5)
    assert np.array_equal(pixels, before)
