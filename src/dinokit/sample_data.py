"""Built-in sample images: a small labelled folder of drawn textures, made on the fly.

Ten texture classes (stripes, checks, dots, rings, waves...), each image with random colours,
scale and phase, so the demo and the tests need no download. Colour is not the label (every
class draws its colours from the same distribution) and the class survives DINO's
augmentations (crops, flips, colour jitter): a model has to learn structure to separate them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

Grid = tuple[NDArray[np.float64], NDArray[np.float64]]
_Pattern = Callable[[Grid, float, random.Random], NDArray[np.bool_]]


def _hstripes(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    return np.asarray(np.sin(2 * math.pi * g[0] / period + rng.uniform(0, 6.3)) > 0)


def _vstripes(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    return _hstripes((g[1], g[0]), period, rng)


def _checker(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    return np.asarray((np.floor(g[0] / period) + np.floor(g[1] / period)) % 2 == 0)


def _dots(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    y, x = (g[0] % period) - period / 2, (g[1] % period) - period / 2
    return np.asarray(y * y + x * x < (period * 0.3) ** 2)


def _rings(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    cy, cx = rng.uniform(0.2, 0.8) * g[0].max(), rng.uniform(0.2, 0.8) * g[1].max()
    return np.asarray(np.sin(2 * math.pi * np.hypot(g[0] - cy, g[1] - cx) / period) > 0)


def _grid(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    width = period * 0.2
    return np.asarray((g[0] % period < width) | (g[1] % period < width))


def _hwaves(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    bend = period * 0.6 * np.sin(2 * math.pi * g[1] / (period * 2.5))
    return np.asarray(np.sin(2 * math.pi * (g[0] + bend) / period) > 0)


def _vwaves(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    return _hwaves((g[1], g[0]), period, rng)


def _blobs(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    field = np.zeros_like(g[0])
    for _ in range(3):
        fy, fx = rng.uniform(0.5, 1.5) / period, rng.uniform(0.5, 1.5) / period
        field += np.sin(2 * math.pi * (fy * g[0] + fx * g[1]) + rng.uniform(0, 6.3))
    return np.asarray(field > 0)


def _plain(g: Grid, period: float, rng: random.Random) -> NDArray[np.bool_]:
    return np.asarray(g[0] < rng.uniform(0.3, 0.7) * g[0].max())  # two flat halves


PATTERNS: dict[str, _Pattern] = {
    "hstripes": _hstripes,
    "vstripes": _vstripes,
    "checker": _checker,
    "dots": _dots,
    "rings": _rings,
    "grid": _grid,
    "hwaves": _hwaves,
    "vwaves": _vwaves,
    "blobs": _blobs,
    "halves": _plain,
}


def _colour(rng: random.Random) -> NDArray[np.float64]:
    return np.array([rng.uniform(0, 255) for _ in range(3)])


def draw_sample(pattern: str, size: int, rng: random.Random) -> Image.Image:
    """One ``size`` x ``size`` RGB image of a texture class with random colours and scale."""
    grid = np.mgrid[0:size, 0:size].astype(np.float64)
    mask = PATTERNS[pattern]((grid[0], grid[1]), rng.uniform(0.12, 0.3) * size, rng)
    first, second = _colour(rng), _colour(rng)
    while np.abs(first - second).sum() < 150:  # keep the pattern visible
        second = _colour(rng)
    pixels = np.where(mask[..., None], first, second)
    pixels += np.random.default_rng(rng.randrange(2**32)).normal(0, 8, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.7)))


def make_sample_images(
    folder: str | Path,
    *,
    per_class: int = 60,
    val_per_class: int = 20,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write ``folder/{train,val}/<pattern>/<n>.jpg`` (labelled by pattern); returns ``folder``.

    Args:
        folder: Destination (created; existing images with the same names are replaced).
        per_class: Training images per class.
        val_per_class: Validation images per class.
        size: Image side in pixels.
        seed: Random seed (the same seed writes the same images).
    """
    folder = Path(folder)
    rng = random.Random(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for pattern in PATTERNS:
            target = folder / split / pattern
            target.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw_sample(pattern, size, rng).save(target / f"{i:04d}.jpg", quality=92)
    return folder
