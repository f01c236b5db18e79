"""Reading images safely: any file, bytes or stream as 8-bit RGB, refusing decompression bombs before decoding.

:func:`load_rgb` is the one image reader of the library (:func:`open_image` for paths); :func:`to_rgb`
converts a PIL image of any mode; :func:`check_image_size` checks a header's size against
:data:`MAX_IMAGE_PIXELS` and :data:`MAX_ASPECT_RATIO`. Errors are :class:`ImageError` (a ``ValueError``)
naming the file. These names are also importable from :mod:`sevlm_lib.data.artemis`, where setting
``artemis.MAX_IMAGE_PIXELS`` or ``artemis.MAX_ASPECT_RATIO`` changes the limits used here.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

PathLike = str | os.PathLike

# Limits checked on the image header, before any pixel is decoded (see :func:`load_rgb`).
# Pillow's own decompression-bomb warning threshold (~89.5 megapixels, e.g. 9459 x 9459): far above any
# WikiArt image, far below what a forged header can claim (a 69-byte PNG can claim 30000 x 30000 = 900 MP,
# 2.7 GB once decoded). Raise it (``sevlm_lib.data.artemis.MAX_IMAGE_PIXELS = ...``) for genuine huge scans.
MAX_IMAGE_PIXELS = 89_478_485
# The image transform scales the SHORTER side to the model's input size (224 px), so an image of aspect
# ratio r becomes 224 x 224r pixels before the centre crop: a 60000 x 1 image would need ~9 GB. Up to 50:1
# (the longest scroll paintings are ~25:1) that is at most 224 x 11200 px (7.5 MB); beyond it the centre
# crop shows under 2% of the picture anyway.
MAX_ASPECT_RATIO = 50.0
_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_16BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class ImageError(ValueError):
    """An image file that cannot be used (unreadable, truncated, too large, too elongated); names the file."""


def check_image_size(size: tuple[int, int], name: str) -> None:
    """Raise :class:`ImageError` naming ``name`` if a ``(width, height)`` is empty, too large or too elongated."""
    width, height = (int(x) for x in size)
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image of size {width}x{height} has no pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{name}: image of size {width}x{height} ({width * height:,} pixels) exceeds the limit of "
            f"{MAX_IMAGE_PIXELS:,} pixels (sevlm_lib.data.artemis.MAX_IMAGE_PIXELS); refused before decoding "
            f"as a possible decompression bomb. Rescale the image (a 600-px side is enough), or raise the "
            f"limit if it is genuine"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(
            f"{name}: image of size {width}x{height} has an aspect ratio of {ratio:,.0f}:1, above the limit of "
            f"{MAX_ASPECT_RATIO:g}:1 (sevlm_lib.data.artemis.MAX_ASPECT_RATIO): the transform scales the "
            f"shorter side to 224 px, so it would become {224 * ratio:,.0f} px long; crop it first"
        )


def _grey_to_8bit(values: np.ndarray, mode: str, name: str) -> np.ndarray:
    """One grey channel of a high-bit-depth mode as ``uint8`` 0..255 (see :func:`to_rgb` for the rules)."""
    if mode in _16BIT_MODES:
        return np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: {mode}-mode image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0.0 and high <= 255.0:
        scaled = values
    elif mode == "I" and low >= 0.0 and high <= 65535.0:
        scaled = values / 257.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:  # one constant value outside 0..255: nothing to show
        scaled = np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """An 8-bit RGB copy of a PIL image of any mode; ``name`` (e.g. the file) goes into errors.

    8-bit modes (``RGB``, ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``, ...) go through ``convert("RGB")`` as
    before. Transparent images (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour) are composited
    onto white rather than losing their alpha (fully opaque ones come out as ``convert`` gives them).
    High-bit-depth grey is rescaled rather than clipped at 255: 16-bit modes (``I;16``, ``I;16B``, ...) are
    divided by 257 (65535 -> 255); ``F`` (float) data within 0..1 is multiplied by 255; ``I``/``F`` data
    within 0..255 is kept, ``I`` data within 0..65535 divided by 257, and anything else mapped linearly from
    its own min..max onto 0..255. NaN or infinite values are an :class:`ImageError`.
    """
    mode = image.mode
    if mode == "RGB":
        return image.convert("RGB")
    if mode in _16BIT_MODES or mode in ("I", "F"):
        grey = _grey_to_8bit(np.asarray(image), mode, name)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*_WHITE, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(source: PathLike | bytes | BinaryIO, name: str | None = None) -> Image.Image:
    """Read an image file (a path, its bytes or a binary file object) as an 8-bit RGB ``PIL.Image``.

    The one image reader of the library. Before decoding it checks the size the header claims
    (:func:`check_image_size`: at most :data:`MAX_IMAGE_PIXELS` pixels and an aspect ratio of at most
    :data:`MAX_ASPECT_RATIO`), then converts any mode with :func:`to_rgb`. Errors name the file (or
    ``name``): ``FileNotFoundError`` for a missing path, :class:`ImageError` (a ``ValueError``) for anything
    unreadable, truncated, too large or too elongated.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "image bytes"
        handle: PathLike | BinaryIO = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            state = "is a folder, not an image file" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"image {path} {state}")
        handle = path
    else:
        label = name or str(getattr(source, "name", "image stream"))
        handle = source
    try:
        with warnings.catch_warnings():
            # the header's size is checked below against our own limit, with a message naming the file
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                check_image_size(image.size, label)
                image.load()
                return to_rgb(image, label)
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{label}: refused before decoding as a possible decompression bomb ({err})"
        ) from None
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{label} is not a readable image ({type(err).__name__}: {err})") from None


def open_image(path: PathLike) -> Image.Image:
    """Open an image file as an RGB ``PIL.Image`` with :func:`load_rgb`; ``FileNotFoundError`` if absent,
    ``ValueError`` if unreadable, truncated, too large or too elongated."""
    return load_rgb(path)
