"""Demo data that ships inside a package: scikit-learn's handwritten digits as image files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from pomona.errors import DatasetError

Layout = Literal["folders", "prefix"]
ImageFormat = Literal["png", "jpeg"]


def write_digits(
    out: str | Path,
    layout: Layout = "folders",
    size: int = 32,
    image_format: ImageFormat = "png",
    limit: int | None = None,
) -> int:
    """Write scikit-learn's 1,797 8x8 handwritten digits as grayscale image files.

    Args:
        out: directory to create (must be absent or empty).
        layout: ``folders`` writes ``out/<digit>/<n>.<ext>``; ``prefix`` writes
            ``out/<digit>_<n>.<ext>``.
        size: side of the written square images, upscaled bicubically from 8x8.
        image_format: ``png`` or ``jpeg``.
        limit: write only the first ``limit`` images (for tiny test datasets).

    Returns:
        The number of files written.

    Raises:
        DatasetError: ``out`` exists and is not empty, or ``size`` is below 8.
    """
    from sklearn.datasets import load_digits  # heavy import, only needed here

    out = Path(out)
    if size < 8:
        raise DatasetError(f"--size must be at least 8 (the digits are 8x8), got {size}")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty; choose a new directory")
    digits = load_digits()
    # Pixel values are ink intensities 0..16: write white ink on black, as MNIST does.
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    targets = digits.target
    count = len(targets) if limit is None else min(limit, len(targets))
    extension = "jpg" if image_format == "jpeg" else "png"
    for index in range(count):
        label = str(int(targets[index]))
        image = Image.fromarray(pixels[index], mode="L")
        if size != 8:
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        if layout == "folders":
            target = out / label / f"{index:04d}.{extension}"
        else:
            target = out / f"{label}_{index:04d}.{extension}"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=90) if image_format == "jpeg" else image.save(target)
    return count
