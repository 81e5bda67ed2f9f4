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


def test_same_values_as_normalising_step_by_step() -> None:
    """Bit for bit what (x / 255 - mean) / std gives in float32, so models see unchanged inputs."""
    spec = Preprocessing(height=8, width=8, channels=3)
    pixels = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    expected = (pixels.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    assert torch.equal(to_model_input(pixels, spec), expected)
