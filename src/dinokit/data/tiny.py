"""Tiny images: each image's centre square scaled to a few pixels a side, as one uint8 array.

The decoding half of the raw-pixel baseline (:mod:`dinokit.evaluation.pixels` turns the
arrays into vectors): ``dinokit evaluate``'s raw-pixel row and the training monitor's
baseline both decode their folders here, so both score the same pixels. JPEG draft mode
keeps a large photo's decode cheap; the files are decoded by a pool of threads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..runtime.machine import threaded_map
from .io import ImageReadError, center_crop, open_image, rescale
from .sources import ImageRecord

logger = logging.getLogger(__name__)


def tiny_image(path: str | Path, size: int) -> NDArray[np.uint8] | None:
    """(size, size, 3) pixels of the centre square of ``path`` (shorter side) scaled to
    ``size`` (bicubic), or None when the file cannot be read."""
    try:
        image = open_image(path, draft_size=size)
    except ImageReadError as error:
        logger.debug("%s", error)
        return None
    side = min(image.size)
    square = center_crop(image, side, side)
    return np.asarray(rescale(square, size / side, Image.Resampling.BICUBIC), dtype=np.uint8)


def tiny_images(
    records: Sequence[ImageRecord], size: int, *, workers: int | None = None
) -> tuple[NDArray[np.uint8], list[ImageRecord]]:
    """The readable images of ``records`` as one (N, size, size, 3) uint8 array.

    Args:
        records: The images (and their labels) to decode.
        size: Side of the square each image is centre-cropped and scaled to.
        workers: Decoding threads (default: one fewer than the usable CPUs, at most 8).

    Returns:
        The (N, size, size, 3) array and the N records it holds, in the order given;
        unreadable files are left out (one warning counts them).
    """
    decoded = list(threaded_map(lambda r: tiny_image(r.path, size), records, workers=workers))
    kept = [(image, r) for image, r in zip(decoded, records, strict=True) if image is not None]
    if len(kept) < len(records):
        first = next(r.path for image, r in zip(decoded, records, strict=True) if image is None)
        logger.warning(
            "%d of %d images could not be read and were left out of the raw-pixel vectors "
            "(the first: %s)",
            len(records) - len(kept),
            len(records),
            first,
        )
    images = (
        np.stack([image for image, _ in kept])
        if kept
        else np.zeros((0, size, size, 3), dtype=np.uint8)
    )
    return images.astype(np.uint8, copy=False), [r for _, r in kept]
