"""Positional embeddings at other input sizes, resampled as each family's reference does it.

A ViT stores one learned position per patch of an M x M grid (14 x 14 for DINO at 224 px,
37 x 37 for DINOv2 at 518 px). At another grid h x w (96 px local crops, native aspect
ratios, large images) the table is resampled bicubically, and the references differ in how:

* ``offset``: facebookresearch/dino ``vision_transformer.py`` ``interpolate_pos_encoding``,
  also the DINOv2 hub models without registers (``interpolate_offset=0.1``,
  ``interpolate_antialias=False`` in ``dinov2/hub/backbones.py``). Bicubic by the scale
  factors ``((h + 0.1) / M, (w + 0.1) / M)``, not antialiased. The 0.1 was added "to avoid
  floating point error" (dino issue #8); since the kernel samples with the scale it is given,
  it also moves every sampling position: output row i reads input row
  ``(i + 0.5) * M / (h + 0.1) - 0.5``, not ``(i + 0.5) * M / h - 0.5``.
* ``antialias``: timm's ``resample_abs_pos_embed`` (``dynamic_img_size``), also the DINOv2
  hub models with registers (``interpolate_offset=0.0``, ``interpolate_antialias=True``).
  Bicubic to exactly h x w, antialiased (which matters when shrinking, e.g. DINOv2's 37 x 37
  table to the 16 x 16 grid of a 224 px image).

Both return the table unchanged at its own grid (the references skip the resampling when the
image is square with the table's number of patches) and compute in float32 (DINOv2 casts the
table to float32 first).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from .config import POS_EMBED_INTERPS, PosEmbedInterp

REFERENCE_OFFSET = 0.1
"""The scale-factor offset of facebookresearch/dino (and DINOv2 without registers)."""


def resample_patch_pos_embed(
    table: Tensor, grid: tuple[int, int], *, interp: PosEmbedInterp
) -> Tensor:
    """The patch positions of an M x M table resampled to an h x w patch grid.

    Args:
        table: (1, M * M, D) patch positions (prefix-token positions removed), row-major.
        grid: (h, w) patch grid of the input.
        interp: ``offset`` or ``antialias`` (see the module docstring).

    Returns:
        (1, h * w, D) positions in ``table``'s dtype; ``table`` itself when (h, w) = (M, M).

    Raises:
        ValueError: the table is not a square grid, or ``interp`` is unknown.
    """
    n, dim = table.shape[1], table.shape[2]
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"positional embedding of {n} patches is not a square grid")
    h, w = grid
    if (h, w) == (side, side):
        return table
    square = table.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if interp == "offset":
        scale = ((h + REFERENCE_OFFSET) / side, (w + REFERENCE_OFFSET) / side)
        out = F.interpolate(square, scale_factor=scale, mode="bicubic", antialias=False)
    elif interp == "antialias":
        out = F.interpolate(square, size=(h, w), mode="bicubic", antialias=True)
    else:
        raise ValueError(f"unknown pos_embed_interp {interp!r}; choose one of {POS_EMBED_INTERPS}")
    if tuple(out.shape[-2:]) != (h, w):  # the offset keeps floor(M * (h + 0.1) / M) = h
        raise AssertionError(f"resampled grid {tuple(out.shape[-2:])} != {(h, w)}")
    return out.permute(0, 2, 3, 1).reshape(1, h * w, dim).to(table.dtype)
