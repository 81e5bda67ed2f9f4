"""The HTML report is one self-contained, escaped page."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pomona.evaluate.html import GalleryItem, png_bytes, write_html_report
from pomona.evaluate.metrics import compute_metrics
from pomona.evaluate.plots import plot_confusion

HOSTILE = '<script>alert("x")</script>'


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image)


def test_png_bytes_upscales_small_images_with_nearest_neighbour() -> None:
    image = np.zeros((8, 12, 3), dtype=np.uint8)
    image[:4, :6] = (255, 0, 0)
    pixels = decode(png_bytes(image))
    assert pixels.shape == (96, 144, 3)
    assert set(np.unique(pixels)) <= {0, 255}  # no blending between pixels
    np.testing.assert_array_equal(pixels[::12, ::12], image)


def test_png_bytes_keeps_large_images_and_accepts_gray() -> None:
    gray = np.arange(200 * 100, dtype=np.uint32).reshape(200, 100).astype(np.uint8)
    np.testing.assert_array_equal(decode(png_bytes(gray[:, :, None])), gray)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(gray.astype(np.float32))


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    classes = ["cat", HOSTILE, "a&b"]
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=30)
    probs = rng.dirichlet(np.ones(3), size=30)
    metrics = compute_metrics(y_true, probs, classes)
    figure = plot_confusion(metrics, tmp_path / "confusion.png", normalize=False)
    thumb = png_bytes(np.zeros((4, 4, 3), dtype=np.uint8))
    gallery = [
        GalleryItem(thumb, thumb, HOSTILE, "cat", 0.93, f"images/{HOSTILE}.png"),
        GalleryItem(thumb, None, "a&b", "cat", 0.51, "images/2.png"),
    ]

    page_path = write_html_report(
        tmp_path / "report",
        metrics,
        model_name=f"m:{HOSTILE}",
        split="test",
        figures={f"Confusion {HOSTILE}": figure},
        gallery=gallery,
    )

    assert page_path == tmp_path / "report" / "index.html"
    page = page_path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "a&amp;b" in page
    # Nothing is fetched: every src is a data URI, and there are no links or imports.
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 1 + 2 + 1  # figure, two images + one heat map
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"https?://|<link|@import|url\(", page)
    assert "default-src 'none'" in page
    embedded = base64.b64decode(sources[0].removeprefix("data:image/png;base64,"))
    assert embedded == figure.read_bytes()
    assert f"{metrics.top1_error:.2%}" in page
    assert page.count("<tr>") >= 1 + len(classes)


def test_report_without_gallery_or_figures(tmp_path: Path) -> None:
    metrics = compute_metrics(np.array([0, 1]), np.eye(2), ["x", "y"])
    page = write_html_report(
        tmp_path, metrics, model_name="m", split="val", figures={}, gallery=[]
    ).read_text()
    assert "Misclassified samples" in page and "None." in page


def test_non_png_figure_is_rejected(tmp_path: Path) -> None:
    metrics = compute_metrics(np.array([0, 1]), np.eye(2), ["x", "y"])
    fake = tmp_path / "fig.png"
    fake.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        write_html_report(
            tmp_path, metrics, model_name="m", split="val", figures={"f": fake}, gallery=[]
        )
