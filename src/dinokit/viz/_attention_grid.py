"""The PNG grid of attention maps: the image, the mean map, then each head, with titles."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

_TITLE_HEIGHT = 16
_GAP = 4
_MAX_COLUMNS = 4
_HEAT_WEIGHT = 0.55  # share of the heat map in an overlay (the rest is the image)
_DIM = 0.3  # brightness of the pixels outside a threshold mask


def overlay(
    image: NDArray[np.uint8], values: NDArray[np.floating], mask: NDArray[np.bool_] | None
) -> NDArray[np.uint8]:
    """A heat map of ``values`` blended over ``image``; pixels outside ``mask`` dimmed.

    Args:
        image: (H, W, 3) uint8.
        values: (H, W) non-negative map, scaled to its maximum for display.
        mask: (H, W) bool, or None.

    Returns:
        (H, W, 3) uint8.
    """
    from matplotlib import colormaps

    peak = float(values.max())
    scaled = values / peak if peak > 0 else np.zeros_like(values)
    heat = colormaps["inferno"](scaled)[..., :3] * 255.0
    blended = (1.0 - _HEAT_WEIGHT) * image.astype(np.float64) + _HEAT_WEIGHT * heat
    if mask is not None:
        blended[~mask] *= _DIM
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def render_grid(
    image: NDArray[np.uint8],
    heads: NDArray[np.floating],
    *,
    masks: NDArray[np.bool_] | None = None,
    mean_mask: NDArray[np.bool_] | None = None,
    show_heads: bool = True,
) -> Image.Image:
    """The panels ``image``, ``mean`` and (when ``show_heads``) ``head 1..n`` in a grid.

    Args:
        image: (H, W, 3) uint8, the image the model saw.
        heads: (heads, H, W) maps.
        masks: (heads, H, W) bool threshold masks, or None.
        mean_mask: (H, W) bool threshold mask of the mean map, or None.
        show_heads: Add one panel per head.

    Returns:
        An RGB image of at most four panels per row, each titled.
    """
    panels: list[tuple[str, NDArray[np.uint8]]] = [
        ("image", image),
        ("mean of heads", overlay(image, heads.mean(axis=0), mean_mask)),
    ]
    if show_heads:
        for i, values in enumerate(heads):
            panels.append(
                (f"head {i + 1}", overlay(image, values, None if masks is None else masks[i]))
            )
    height, width = image.shape[:2]
    columns = min(len(panels), _MAX_COLUMNS)
    rows = -(-len(panels) // columns)
    cell_w, cell_h = width + _GAP, height + _TITLE_HEIGHT + _GAP
    canvas = Image.new("RGB", (columns * cell_w - _GAP, rows * cell_h - _GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (title, pixels) in enumerate(panels):
        x, y = (index % columns) * cell_w, (index // columns) * cell_h
        draw.text((x + 2, y + 2), title, fill="black")
        canvas.paste(Image.fromarray(pixels), (x, y + _TITLE_HEIGHT))
    return canvas
