"""Train-time augmentation on uint8 NHWC batches, in torch, drawn from a seeded generator.

The training loop augments each batch as it arrives (on the training device), with a generator
seeded by the run's seed, the epoch and the worker's rank: the same seed gives the same crops
and flips, so a run can be repeated exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import NonNegativeInt

from pomona.config import StrictModel


class Augmentation(StrictModel):
    """Train-time augmentation applied to every training batch.

    Attributes:
        random_crop_padding: pad each side by this many pixels (edge values), then crop back to
            the original size at a random offset; 0 disables.
        hflip: flip horizontally with probability 0.5 (leave off for digits and text).
    """

    random_crop_padding: NonNegativeInt = 0
    hflip: bool = False

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is switched on."""
        return self.random_crop_padding > 0 or self.hflip


def augmentation_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The generator of one worker's draws in one epoch: independent streams, reproducible."""
    (state,) = np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state))


def augment_batch(
    images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator
) -> torch.Tensor:
    """Random crop after edge padding, and random horizontal flip, per image.

    Both are one gather: a crop at offset ``(top, left)`` of the edge-padded image reads pixel
    ``(y + top - padding, x + left - padding)`` of the original, clamped to its border, and a
    flip reads its columns backwards. Runs on ``images``' device; the draws come from
    ``generator`` (on the CPU), so they do not depend on the device.

    Args:
        images: uint8 ``(N, H, W, C)`` pixels.
        augmentation: what to apply.
        generator: source of the random offsets and flips.
    """
    if not augmentation.enabled:
        return images
    count, height, width, _ = images.shape
    padding = augmentation.random_crop_padding
    offsets = torch.randint(0, 2 * padding + 1, (2, count, 1), generator=generator) - padding
    rows = (torch.arange(height) + offsets[0]).clamp_(0, height - 1)
    cols = (torch.arange(width) + offsets[1]).clamp_(0, width - 1)
    if augmentation.hflip:
        flip = torch.rand(count, 1, generator=generator) < 0.5
        cols = torch.where(flip, cols.flip(1), cols)
    device = images.device
    index = torch.arange(count, device=device)[:, None, None]
    return images[index, rows.to(device)[:, :, None], cols.to(device)[:, None, :]]
