"""Thumbnails: one image shrunk to fit a box, and many decoded in parallel, streamed in order.

Every thumbnail in dinokit (cluster contact sheets, map points, report pages, the server's
image views) is :func:`thumbnail_image`. Decoding uses JPEG draft mode (the decoder
downscales by 1/2..1/8 while the short side stays above the thumbnail size), so a
12-megapixel photo costs a fraction of a full decode. At most a few thumbnails per worker
are in flight, so memory stays flat however many are asked for.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..runtime.machine import threaded_map
from .io import ImageReadError, open_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thumbnail:
    """One encoded thumbnail, or why there is none.

    Attributes:
        data: JPEG bytes, ``None`` when the image could not be read.
        width: Pixel width (0 when unreadable).
        height: Pixel height (0 when unreadable).
        error: The reason the image could not be read, else ``None``.
    """

    data: bytes | None
    width: int = 0
    height: int = 0
    error: str | None = None


def thumbnail_image(path: str | Path, size: int) -> Image.Image:
    """The image at ``path`` shrunk to fit a ``size`` x ``size`` box (aspect kept), RGB.

    Raises:
        ImageReadError: The file cannot be read as an image.
    """
    image = open_image(path, draft_size=size)
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return image


def encode_thumbnail(path: str | Path, size: int, *, quality: int = 80) -> Thumbnail:
    """A JPEG thumbnail of ``path`` fitting ``size`` x ``size``; unreadable files give an error."""
    try:
        image = thumbnail_image(path, size)
    except ImageReadError as error:
        return Thumbnail(data=None, error=error.reason)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return Thumbnail(data=buffer.getvalue(), width=image.width, height=image.height)


def stream_thumbnails(
    paths: Iterable[str | Path], size: int, *, workers: int | None = None
) -> Iterator[Thumbnail]:
    """Thumbnails of ``paths`` in the same order, decoded by a thread pool.

    At most ``4 * workers`` results are held at any time
    (:func:`~dinokit.runtime.machine.threaded_map`).

    Args:
        paths: Image files.
        size: Longest side of each thumbnail in pixels.
        workers: Decoding threads (default: one fewer than the usable CPUs, at most 8).

    Returns:
        An iterator of one :class:`Thumbnail` per path, in order.
    """
    return threaded_map(lambda path: encode_thumbnail(path, size), paths, workers=workers)
