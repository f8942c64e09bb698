"""Opening one image file robustly: fully decoded, upright, RGB, or a typed error; and the
two geometric steps other modules share (a scale by a factor, a centred crop).

The decompression-bomb guard of PIL stays on: an image above ``PIL.Image.MAX_IMAGE_PIXELS``
(PIL's warning threshold) is refused with a clear reason instead of a warning; set that
attribute (or ``None``) to change the limit.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

from dinokit.data.modes import to_rgb

logger = logging.getLogger(__name__)


#: The reduced scales a JPEG decoder offers (libjpeg's DCT scaling), largest first.
DRAFT_SCALES = (8, 4, 2)


@dataclass(frozen=True)
class DecodeSize:
    """The smallest decoded image a consumer can use without upsampling anything.

    JPEG draft mode decodes at 1/2, 1/4 or 1/8 of the full size almost for free; it is
    used only while the decoded image keeps both requirements.

    Attributes:
        short_side: Both sides at least this many pixels.
        area: At least this many pixels in all (width x height); ``math.inf`` forbids
            any reduction.
    """

    short_side: int
    area: float = 0.0

    def __post_init__(self) -> None:
        if self.short_side < 1:
            raise ValueError(
                f"draft_size must be a positive number of pixels, got {self.short_side}"
            )

    def draft_scale(self, width: int, height: int) -> int:
        """The largest reduction (8, 4, 2 or 1) of a ``width x height`` image that keeps
        ``short_side`` and ``area``.

        Sides are counted rounded down (PIL's own rule, ``size // scale``), so the decoded
        image, rounded up, meets both requirements.
        """
        for scale in DRAFT_SCALES:
            w, h = width // scale, height // scale
            if min(w, h) >= self.short_side and w * h >= self.area:
                return scale
        return 1


def apply_draft(image: Image.Image, need: int | DecodeSize) -> None:
    """Lets a JPEG's decoder reduce ``image`` as far as ``need`` allows (before ``load``).

    Args:
        image: A just-opened, not yet loaded PIL image; other formats are left alone.
        need: A :class:`DecodeSize`, or an ``int`` short side.
    """
    if image.format != "JPEG":
        return
    need = need if isinstance(need, DecodeSize) else DecodeSize(need)
    width, height = image.size
    scale = need.draft_scale(width, height)
    if scale > 1:
        # PIL picks the largest power of two <= min(W // w, H // h): exactly `scale` here.
        image.draft("RGB", (width // scale, height // scale))


class ImageReadError(Exception):
    """An image file that cannot be used.

    Attributes:
        path: The file, as given.
        reason: Why, in a few words (``"empty file (0 bytes)"``, ``"truncated or corrupt
            data: ..."``, ``"not an image (format not recognised)"``, ``"too large: ..."``).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = " ".join(reason.split())  # one line, whatever PIL said
        super().__init__(f"cannot read image {self.path}: {self.reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str, str]]:
        # Exceptions are pickled through their args; ours has two named ones.
        return (type(self), (self.path, self.reason))


def open_image(
    path: str | os.PathLike[str], *, draft_size: int | DecodeSize | None = None
) -> Image.Image:
    """Opens an image file as a fully decoded, upright ``RGB`` image.

    Steps: refuse empty files; open with PIL (decompression-bomb guard on, its warning made an
    error); for a JPEG with ``draft_size``, let the decoder downscale by 1/2, 1/4 or 1/8 while
    the image keeps what ``draft_size`` asks (:func:`apply_draft`); decode fully (so truncated
    files fail here, not in a later transform); apply the EXIF orientation; convert to RGB
    with :func:`dinokit.data.modes.to_rgb` (transparency over white, 16-bit and float
    greyscale scaled to 8 bits). Multi-frame files give their first frame.

    Args:
        path: The image file.
        draft_size: Smallest short side (pixels) the caller needs, or a
            :class:`DecodeSize` (short side and area), or ``None`` to decode at full size.
            Only JPEGs are affected.

    Returns:
        An ``RGB`` image independent of the file (the file is closed).

    Raises:
        ImageReadError: The file is missing, empty, not an image, truncated or corrupt, too
            large, or of a mode that cannot be converted.
    """
    name = os.fspath(path)
    need = DecodeSize(draft_size) if isinstance(draft_size, int) else draft_size
    try:
        if os.path.getsize(name) == 0:
            raise ImageReadError(name, "empty file (0 bytes)")
    except FileNotFoundError as error:
        raise ImageReadError(name, "file not found") from error
    except PermissionError as error:
        raise ImageReadError(name, "permission denied") from error
    except OSError as error:
        raise ImageReadError(name, f"cannot read the file: {error}") from error
    return _decode(name, name, need)


def open_image_bytes(
    data: bytes, name: str, *, draft_size: int | DecodeSize | None = None
) -> Image.Image:
    """:func:`open_image` for an image held in memory (an upload), with the same checks.

    Args:
        data: The encoded image file.
        name: What to call it in errors (the upload's file name).
        draft_size: As in :func:`open_image`.

    Raises:
        ImageReadError: The data is empty, not an image, truncated or corrupt, or too large.
    """
    need = DecodeSize(draft_size) if isinstance(draft_size, int) else draft_size
    if not data:
        raise ImageReadError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, need)


def _decode(source: str | IO[bytes], name: str, need: DecodeSize | None) -> Image.Image:
    """Decode ``source`` fully, upright and RGB; every failure an :class:`ImageReadError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                if need is not None:
                    apply_draft(opened, need)
                opened.load()
                upright = _exif_upright(opened)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(
            name, f"too large (decompression-bomb guard, PIL.Image.MAX_IMAGE_PIXELS): {error}"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageReadError(name, "not an image (format not recognised)") from error
    except FileNotFoundError as error:
        raise ImageReadError(name, "file not found") from error
    except PermissionError as error:
        raise ImageReadError(name, "permission denied") from error
    except MemoryError as error:
        raise ImageReadError(name, "too large (out of memory while decoding)") from error
    except OSError as error:  # PIL's "image file is truncated", "broken data stream", ...
        raise ImageReadError(name, f"truncated or corrupt data: {error}") from error
    except Exception as error:  # corrupt headers surface as many types (SyntaxError, ...)
        raise ImageReadError(name, f"corrupt data: {type(error).__name__}: {error}") from error
    try:
        return to_rgb(upright)
    except ValueError as error:
        raise ImageReadError(name, f"unsupported image mode {upright.mode}: {error}") from error


def _exif_upright(image: Image.Image) -> Image.Image:
    """A copy of ``image`` rotated/flipped by its EXIF orientation (unchanged if unreadable)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as error:  # a broken EXIF block must not make the pixels unusable
        logger.debug(
            "ignoring unreadable EXIF orientation of %s: %s", getattr(image, "filename", "?"), error
        )
        return image.copy()


def rescale(
    image: Image.Image, scale: float, resample: Image.Resampling, *, min_side: int = 1
) -> Image.Image:
    """``image`` with each side multiplied by ``scale``, rounded, and at least ``min_side``."""
    width = max(min_side, round(image.width * scale))
    height = max(min_side, round(image.height * scale))
    return image.resize((width, height), resample)


def center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """The central ``width x height`` pixels of ``image`` (offsets rounded down)."""
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))
