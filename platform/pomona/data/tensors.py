"""Pixels to network input, in torch: the normalisation every stage applies on the fly."""

from __future__ import annotations

import torch

from pomona.data.manifest import Preprocessing


def to_model_input(pixels: torch.Tensor, spec: Preprocessing) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` pixels to float32 ``(N, C, H, W)``, scaled to [0, 1] and normalised.

    Runs on whatever device ``pixels`` is on, so GPU training normalises on the GPU.
    """
    std = torch.tensor(spec.std, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    # (x / 255 - mean) / std as one multiply-add on a tensor made contiguous NCHW while it is
    # converted: two passes over the floats instead of five (the old chain of in-place ops on a
    # permuted view, then .contiguous(), cost 10x as much and halved streaming throughput).
    images = pixels.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    return images.mul_(1.0 / (255.0 * std)).add_(-mean / std)
