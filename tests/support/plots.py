"""Checks shared by the plot tests."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_side: int = 200) -> None:
    """``path`` is a PNG at least ``min_side`` pixels on each side, and pyplot holds no figure."""
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(path) as image:
        assert min(image.size) >= min_side
    assert plt.get_fignums() == []
