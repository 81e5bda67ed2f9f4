"""Checks shared by the plot tests."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axis import Axis
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_side: int = 200) -> None:
    """``path`` is a PNG at least ``min_side`` pixels on each side, and pyplot holds no figure."""
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(path) as image:
        assert min(image.size) >= min_side
    assert plt.get_fignums() == []


def visible_ticks(axis: Axis) -> list[float]:
    """The major tick positions within ``axis``'s view (locators also return a few outside it)."""
    low, high = sorted(axis.get_view_interval())
    return [float(t) for t in axis.get_majorticklocs() if low <= t <= high]
