"""Train-time augmentation on uint8 NHWC batches; the loader runs it as a Ray Data stage."""

from __future__ import annotations

import numpy as np
from pydantic import NonNegativeInt

from pomona.config import StrictModel


class Augmentation(StrictModel):
    """Train-time augmentation applied in the data pipeline.

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


def augment_batch(
    batch: dict[str, np.ndarray], augmentation: Augmentation
) -> dict[str, np.ndarray]:
    """Random crop after edge padding, and random horizontal flip, per image, on uint8 NHWC."""
    images = batch["image"]
    padding = augmentation.random_crop_padding
    rng = np.random.default_rng()
    count, height, width, _ = images.shape
    if padding:
        padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), "edge")
        tops = rng.integers(0, 2 * padding + 1, count)
        lefts = rng.integers(0, 2 * padding + 1, count)
        images = np.stack(
            [
                padded[i, top : top + height, left : left + width]
                for i, (top, left) in enumerate(zip(tops, lefts, strict=True))
            ]
        )
    if augmentation.hflip:
        flip = rng.random(count) < 0.5
        images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    return {**batch, "image": np.ascontiguousarray(images)}
