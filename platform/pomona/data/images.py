"""Decode, validate and preprocess one image: the single place raw pixels become network pixels.

Ingest, ``pomona predict`` and serving all call :func:`preprocess`, so a model sees the same
geometry and channels at every stage. Normalisation (mean/std) is applied later, on the fly, by
:func:`pomona.data.tensors.to_model_input`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pomona.data.manifest import Preprocessing
from pomona.errors import InvalidRequestError

#: Largest accepted image, in pixels (about 8k x 8k). Larger headers are rejected before decoding.
DEFAULT_MAX_PIXELS = 64_000_000

# A truncated file must be rejected, never padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_DIRECT = {"1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr", "RGBX", "La"}


class ImageRejected(InvalidRequestError):
    """The bytes are not a usable image; the message is the reason recorded in rejected.csv."""


def preprocess(
    data: bytes, spec: Preprocessing, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode image bytes and return ``spec.image_shape`` uint8 pixels (height, width, channels).

    Steps: read the header and refuse images over ``max_pixels`` (a decompression bomb is never
    decoded), let JPEG decode at reduced scale when much larger than the target, decode fully
    (truncated data fails), apply the EXIF orientation, flatten transparency onto white, scale
    16-bit samples to 8 bits, convert to L or RGB, and resize (``crop``: cover then centre-crop;
    ``stretch``: exact size).

    Raises:
        ImageRejected: with a short reason (empty, not an image, too large, truncated or corrupt,
            unsupported mode).
    """
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"too large: {width}x{height} = {width * height} pixels > limit {max_pixels}"
                )
            if image.format == "JPEG":
                image.draft(image.mode, _cover_size(image.size, spec))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"too large: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(f"corrupt or truncated: {error}") from None
    image = _to_channels(image, spec.channels)
    image = _resize(image, spec)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def load(path: str | Path, spec: Preprocessing, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a file and :func:`preprocess` it."""
    return preprocess(Path(path).read_bytes(), spec, max_pixels)


def _cover_size(size: tuple[int, int], spec: Preprocessing) -> tuple[int, int]:
    """Smallest (w, h) at the source aspect ratio that still covers the target."""
    width, height = size
    scale = max(spec.width / width, spec.height / height)
    return (max(1, round(width * scale)), max(1, round(height * scale)))


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        # 16-bit PNG/TIFF samples span 0..65535: keep the top 8 bits.
        wide = np.asarray(image, dtype=np.int64)
        image = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), mode="L")
    elif mode not in _DIRECT:
        raise ImageRejected(f"unsupported image mode {mode!r}")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA", "La"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _resize(image: Image.Image, spec: Preprocessing) -> Image.Image:
    target = (spec.width, spec.height)
    if image.size == target:
        return image
    if spec.resize == "stretch":
        return image.resize(target, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return ImageOps.fit(image, target, Image.Resampling.BILINEAR)
