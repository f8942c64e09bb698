"""The raw-pixel baseline: each image's pixels as one vector, centred and L2-normalised.

kNN on these vectors (the classic "tiny images" baseline) is the floor a learned embedding
has to beat: on CIFAR-10 it already scores about 40 %. Arrays in, arrays out; decoding the
images is the job of :func:`dinokit.data.tiny.tiny_images`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BASELINE_SIZE = 32
"""Side of the raw-pixel baseline's square images (3 x 32 x 32 = 3,072 values): the classic
"tiny images" size, cheap to decode for any dataset."""


def flatten_pixels(images: NDArray[np.generic]) -> NDArray[np.float32]:
    """(N, H, W, 3) images -> (N, 3*H*W) float32 rows, ``uint8`` scaled to [0, 1].

    Float images are taken as they are (expected in [0, 1]), so ``uint8`` and float copies of
    the same pixels give the same rows.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be an (N, H, W, 3) array, got shape {images.shape}")
    rows = images.reshape(images.shape[0], -1).astype(np.float32)
    if images.dtype == np.uint8:
        rows /= 255.0
    return rows


def pixel_mean(images: NDArray[np.generic]) -> NDArray[np.float32]:
    """The (3*H*W,) mean of :func:`flatten_pixels` over the N images (the training set's
    centre, used for train and val alike)."""
    if len(images) == 0:
        raise ValueError("pixel_mean needs at least one image")
    mean: NDArray[np.float32] = (
        flatten_pixels(images).mean(axis=0, dtype=np.float64).astype(np.float32)
    )
    return mean


def raw_pixel_vectors(
    images: NDArray[np.generic], mean: NDArray[np.floating]
) -> NDArray[np.float32]:
    """Raw-pixel vectors: flattened, centred by ``mean`` and L2-normalised.

    Args:
        images: (N, H, W, 3) ``uint8`` (scaled to [0, 1]) or float images.
        mean: (3*H*W,) centre, normally :func:`pixel_mean` of the training images.

    Returns:
        (N, 3*H*W) float32 rows of unit L2 norm (a row equal to the mean stays zero).
    """
    rows = flatten_pixels(images)
    if mean.shape != (rows.shape[1],):
        raise ValueError(
            f"mean has shape {mean.shape} but the images flatten to {rows.shape[1]} values: "
            "compute it with pixel_mean() on images of the same size"
        )
    rows -= mean.astype(np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows /= np.maximum(norms, 1e-12)
    return rows


def baseline_vectors(
    train_images: NDArray[np.generic], val_images: NDArray[np.generic]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The raw-pixel baseline's vectors of a train/val pair: both centred by the training
    images' mean (:func:`pixel_mean`) and L2-normalised (:func:`raw_pixel_vectors`).

    Args:
        train_images: (N, H, W, 3) reference images; their mean is the centre.
        val_images: (M, H, W, 3) images of the same size.

    Returns:
        (N, 3*H*W) and (M, 3*H*W) float32 rows.
    """
    mean = pixel_mean(train_images)
    return raw_pixel_vectors(train_images, mean), raw_pixel_vectors(val_images, mean)
