"""Converting a PIL image of any mode to 8-bit RGB.

Decisions:

* Transparency (RGBA, LA, PA, RGBa, La, and P/L/RGB with a ``transparency`` entry) is
  composited over white: product photos and logos with a transparent background then look
  as they do in a viewer, instead of showing whatever colour the hidden pixels hold (often
  black), which dropping the alpha channel would expose.
* 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) maps the full 0..65535 range
  linearly to 0..255 (``v / 257``), so relative brightness is kept across images.
* 32-bit integer (``I``) and float (``F``) greyscale have no fixed range, so it is read from
  the data: values within 0..1 (float only) are scaled by 255; within 0..255 kept; within
  0..65535 divided by 257; anything else (negative values, larger ranges) is stretched
  min..max to 0..255. Non-finite values become 0.
* CMYK and other colour modes use PIL's conversion (no ICC colour management).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_WIDE_MODES = frozenset({"I", "F", "I;32", "I;32B", "I;32L"})


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts an image of any PIL mode to ``RGB`` (8 bits per channel).

    See the module docstring for the rules (alpha over white, 16-bit and float scaling).

    Args:
        image: A loaded PIL image.

    Returns:
        An ``RGB`` image of the same size (``image`` itself when already ``RGB`` without
        transparency).

    Raises:
        ValueError: The mode cannot be converted.
    """
    mode = image.mode
    if mode in _ALPHA_MODES or (
        mode in ("P", "L", "RGB") and image.info.get("transparency") is not None
    ):
        return _over_white(image.convert("RGBA"))
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        return _grey_to_rgb(np.asarray(image).astype(np.float64) / 257.0)
    if mode in _WIDE_MODES:
        return _grey_to_rgb(_wide_to_8bit_range(np.asarray(image), is_float=mode == "F"))
    return image.convert("RGB")


def _over_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _wide_to_8bit_range(array: NDArray[np.generic], *, is_float: bool) -> NDArray[np.float64]:
    """Values of an ``I``/``F`` image mapped to the 0..255 range (float64, same shape)."""
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    values = np.where(finite, values, 0.0)
    low, high = float(values[finite].min()), float(values[finite].max())
    if low >= 0.0 and high <= 1.0 and is_float:
        return values * 255.0
    if low >= 0.0 and high <= 255.0:
        return values
    if low >= 0.0 and high <= 65535.0:
        return values / 257.0
    return (values - low) * (255.0 / (high - low))


def _grey_to_rgb(values: NDArray[np.float64]) -> Image.Image:
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
