from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from support.images import bomb_png, gradient, png_bytes

from pomona.data.images import ImageRejected, preprocess
from pomona.data.manifest import Preprocessing

RGB8 = Preprocessing(height=8, width=8, channels=3)
GRAY8 = Preprocessing(height=8, width=8, channels=1)


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_rgb_png_resized_to_spec_shape_and_dtype() -> None:
    out = preprocess(png_bytes(Image.fromarray(gradient(32, 24))), RGB8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    # The gradient survives: red increases left to right, green top to bottom.
    assert out[4, 0, 0] < out[4, -1, 0]
    assert out[0, 4, 1] < out[-1, 4, 1]


def test_grayscale_to_three_channels_and_rgb_to_one() -> None:
    gray = Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L")
    out = preprocess(png_bytes(gray), RGB8)
    assert out.shape == (8, 8, 3) and np.all(out == 200)
    rgb = Image.fromarray(np.full((8, 8, 3), (255, 0, 0), np.uint8))
    out = preprocess(png_bytes(rgb), GRAY8)
    assert out.shape == (8, 8, 1)
    assert np.all(out == round(255 * 0.299))  # ITU-R 601 luma of pure red


def test_rgba_transparency_is_flattened_on_white() -> None:
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[..., 0] = 255  # red, fully transparent everywhere except one opaque pixel
    pixels[0, 0, 3] = 255
    out = preprocess(png_bytes(Image.fromarray(pixels, mode="RGBA")), RGB8)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[5, 5]) == (255, 255, 255)


def test_palette_image_converted() -> None:
    image = Image.fromarray(gradient(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = preprocess(png_bytes(image), RGB8)
    assert out.shape == (8, 8, 3)
    assert np.abs(out.astype(int) - np.asarray(image.convert("RGB"), int)).max() == 0


def test_cmyk_jpeg_converted_to_rgb() -> None:
    image = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = preprocess(encode(image, "JPEG", quality=95), RGB8)
    assert out.shape == (8, 8, 3)
    red, green, blue = out[4, 4].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_png_scaled_to_eight_bits() -> None:
    wide = np.full((8, 8), 40_000, dtype=np.uint16)
    image = Image.fromarray(wide)
    assert image.mode.startswith("I;16")
    out = preprocess(png_bytes(image), GRAY8)
    assert np.all(out == 40_000 >> 8)


def test_exif_orientation_applied() -> None:
    pixels = np.zeros((10, 20), np.uint8)
    pixels[:, :10] = 255  # left half white
    image = Image.fromarray(pixels, mode="L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = encode(image, "JPEG", quality=100, exif=exif.tobytes())
    spec = Preprocessing(height=20, width=10, channels=1)
    out = preprocess(data, spec)[..., 0]
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert out.shape == (20, 10)
    assert np.array_equal(out, expected)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # white moved to the top


def test_crop_keeps_aspect_ratio_and_stretch_does_not() -> None:
    pixels = np.zeros((10, 30), np.uint8)
    pixels[:, 10:20] = 255  # a white centre third
    data = png_bytes(Image.fromarray(pixels, mode="L"))
    cropped = preprocess(data, Preprocessing(height=10, width=10, channels=1, resize="crop"))
    stretched = preprocess(data, Preprocessing(height=10, width=10, channels=1, resize="stretch"))
    assert cropped.mean() > 240  # only the centre third is left
    assert 60 < stretched.mean() < 110  # the whole width squeezed in


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am a text file\n", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
        (bomb_png(), "too large"),
    ],
)
def test_bad_bytes_rejected_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected, match=reason):
        preprocess(data, RGB8)


def test_truncated_image_rejected() -> None:
    data = encode(Image.fromarray(gradient(64, 64)), "JPEG", quality=95)
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        preprocess(data[: len(data) // 2], RGB8)


def test_pixel_limit_checked_before_decoding() -> None:
    data = png_bytes(Image.fromarray(gradient(40, 40)))
    with pytest.raises(ImageRejected, match="1600 pixels > limit 1000"):
        preprocess(data, RGB8, max_pixels=1000)


def test_unsupported_mode_rejected() -> None:
    image = Image.fromarray(np.zeros((8, 8), np.float32), mode="F")
    with pytest.raises(ImageRejected, match="unsupported image mode 'F'"):
        preprocess(encode(image, "TIFF"), RGB8)
