"""Built-in sample images: a small labelled folder of drawn shapes, made on the fly.

Ten classes of shapes (random colours, sizes, positions and textured backgrounds), so the
demo and the tests need no download. Colour is not the label: a model has to see shape.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

Box = tuple[float, float, float, float]
_Drawer = Callable[[ImageDraw.ImageDraw, Box, tuple[int, int, int], random.Random], None]


def _polygon(n: int, star: bool = False) -> _Drawer:
    def draw(
        d: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], rng: random.Random
    ) -> None:
        x0, y0, x1, y1 = box
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        turn = rng.uniform(0, 2 * math.pi)
        points = []
        for i in range(n * (2 if star else 1)):
            radius = r * (0.45 if star and i % 2 else 1.0)
            angle = turn + math.pi * i / n if star else turn + 2 * math.pi * i / n
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        d.polygon(points, fill=colour)

    return draw


def _circle(
    d: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], rng: random.Random
) -> None:
    d.ellipse(box, fill=colour)


def _ring(
    d: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], rng: random.Random
) -> None:
    d.ellipse(box, outline=colour, width=max(2, int((box[2] - box[0]) / 7)))


def _cross(
    d: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], rng: random.Random
) -> None:
    x0, y0, x1, y1 = box
    w = (x1 - x0) / 4
    d.rectangle((x0, (y0 + y1) / 2 - w / 2, x1, (y0 + y1) / 2 + w / 2), fill=colour)
    d.rectangle(((x0 + x1) / 2 - w / 2, y0, (x0 + x1) / 2 + w / 2, y1), fill=colour)


def _stripes(vertical: bool) -> _Drawer:
    def draw(
        d: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], rng: random.Random
    ) -> None:
        x0, y0, x1, y1 = box
        step = max(3.0, (x1 - x0) / 5)
        for i in range(5):
            if vertical:
                d.rectangle((x0 + i * step, y0, x0 + i * step + step / 2, y1), fill=colour)
            else:
                d.rectangle((x0, y0 + i * step, x1, y0 + i * step + step / 2), fill=colour)

    return draw


def _checker(
    d: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], rng: random.Random
) -> None:
    x0, y0, x1, _ = box
    cell = (x1 - x0) / 4
    for i in range(4):
        for j in range(4):
            if (i + j) % 2 == 0:
                d.rectangle(
                    (x0 + i * cell, y0 + j * cell, x0 + (i + 1) * cell, y0 + (j + 1) * cell),
                    fill=colour,
                )


SHAPES: dict[str, _Drawer] = {
    "circle": _circle,
    "ring": _ring,
    "square": _polygon(4),
    "triangle": _polygon(3),
    "hexagon": _polygon(6),
    "star": _polygon(5, star=True),
    "cross": _cross,
    "hstripes": _stripes(vertical=False),
    "vstripes": _stripes(vertical=True),
    "checker": _checker,
}


def draw_sample(shape: str, size: int, rng: random.Random) -> Image.Image:
    """One ``size`` x ``size`` RGB image of ``shape`` on a textured background."""
    background = tuple(rng.randrange(0, 256) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(2, 6)):  # background clutter: faint small dots
        x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1, size / 16)
        tint = tuple(min(255, max(0, c + rng.randrange(-40, 41))) for c in background)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tint)
    while True:  # a shape colour that stands out from the background
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if sum(abs(a - b) for a, b in zip(colour, background, strict=True)) > 200:
            break
    side = rng.uniform(0.45, 0.8) * size
    x0, y0 = rng.uniform(0, size - side), rng.uniform(0, size - side)
    SHAPES[shape](draw, (x0, y0, x0 + side, y0 + side), colour, rng)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def make_sample_images(
    folder: str | Path,
    *,
    per_class: int = 60,
    val_per_class: int = 20,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write ``folder/{train,val}/<shape>/<n>.jpg`` (labelled by shape) and return ``folder``.

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
        for shape in SHAPES:
            target = folder / split / shape
            target.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw_sample(shape, size, rng).save(target / f"{i:04d}.jpg", quality=92)
    return folder
