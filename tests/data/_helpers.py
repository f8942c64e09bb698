"""Small generated images for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rgb_noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """A ``width x height`` RGB image of random pixels."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def write_jpeg(path: Path, width: int = 32, height: int = 24, seed: int = 0) -> Path:
    """Writes a random RGB JPEG and returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb_noise(width, height, seed).save(path, format="JPEG", quality=90)
    return path


def touch(path: Path) -> Path:
    """Creates an empty file (listing never opens files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path
