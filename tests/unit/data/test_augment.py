"""Train-time augmentation: edge-padded random crops, horizontal flips, seeded draws."""

from __future__ import annotations

import numpy as np
import torch

from pomona.data.augment import Augmentation, augment_batch, augmentation_generator


def pixels(count: int = 64, height: int = 6, width: int = 7, channels: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (count, height, width, channels), dtype=np.uint8))


def crop_offsets(image: np.ndarray, crop: np.ndarray, padding: int) -> list[tuple[int, int]]:
    """Offsets at which ``crop`` is a window of ``image`` padded with its edge values."""
    height, width, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), "edge")
    return [
        (top, left)
        for top in range(2 * padding + 1)
        for left in range(2 * padding + 1)
        if np.array_equal(padded[top : top + height, left : left + width], crop)
    ]


def test_random_crop_is_a_crop_of_the_edge_padded_image() -> None:
    images = pixels()
    out = augment_batch(
        images, Augmentation(random_crop_padding=2), torch.Generator().manual_seed(0)
    )
    assert out.shape == images.shape and out.dtype == torch.uint8
    offsets = set()
    for before, after in zip(images.numpy(), out.numpy(), strict=True):
        found = crop_offsets(before, after, padding=2)
        assert found, "not a crop of the padded image"
        offsets.update(found)
    assert len(offsets) >= 15  # 64 draws over 25 offsets land on most of them


def test_hflip_only_mirrors_about_half() -> None:
    images = pixels()
    out = augment_batch(images, Augmentation(hflip=True), torch.Generator().manual_seed(0))
    kept = mirrored = 0
    for before, after in zip(images, out, strict=True):
        same, mirror = torch.equal(after, before), torch.equal(after, before.flip(1))
        assert same or mirror
        kept += same
        mirrored += mirror
    # Fewer than 10 of 64 either way has odds below 1e-7 for a fair coin.
    assert kept >= 10 and mirrored >= 10, (kept, mirrored)


def test_crop_and_flip_together_flip_the_crop() -> None:
    images = pixels(count=16)
    out = augment_batch(
        images, Augmentation(random_crop_padding=1, hflip=True), torch.Generator().manual_seed(3)
    )
    flipped = 0
    for before, after in zip(images.numpy(), out.numpy(), strict=True):
        as_is, mirrored = crop_offsets(before, after, 1), crop_offsets(before, after[:, ::-1], 1)
        assert as_is or mirrored
        flipped += bool(mirrored)
    assert 0 < flipped < 16


def test_the_same_seed_draws_the_same_augmentation() -> None:
    images = pixels()
    spec = Augmentation(random_crop_padding=2, hflip=True)

    def draw(seed: int, epoch: int, rank: int) -> torch.Tensor:
        return augment_batch(images, spec, augmentation_generator(seed, epoch, rank))

    first = draw(0, 1, 0)
    assert torch.equal(first, draw(0, 1, 0))
    for other in (draw(1, 1, 0), draw(0, 2, 0), draw(0, 1, 1)):
        assert not torch.equal(first, other)  # new draws per seed, epoch and worker


def test_nothing_enabled_returns_the_pixels() -> None:
    images = pixels(count=2)
    assert augment_batch(images, Augmentation(), torch.Generator()) is images
