"""DINO's self-attention maps: the CLS query of the last block over the patch tokens.

Follows ``visualize_attention.py`` of facebookresearch/dino (Caron et al. 2021, "Emerging
Properties in Self-Supervised Vision Transformers", Fig. 1 and 3): one map per head, the
image cropped to a multiple of the patch size, maps upsampled to the image (nearest), and
an optional threshold that keeps, per head, the most attended patches holding a given share
of the attention mass (sort, normalise, cumulative sum, keep the top share). Register tokens
of DINOv2 ``_reg`` models are left out, as the CLS token itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor

from .._files import atomic_write, save_npy
from ..data.io import ImageReadError, center_crop, open_image, rescale
from ..data.modes import to_rgb
from ..data.preprocess import INTERPOLATIONS
from ..models.backbone import Backbone
from ..runtime.device import resolve_device
from ._attention_grid import render_grid

logger = logging.getLogger(__name__)

HEAD_CHOICES = ("all", "mean")
"""``all``: the PNG shows the mean and every head; ``mean``: the mean only."""
MAX_ASPECT = 2.0
"""Longest side of the model input over ``size``: bounds the (T, T) attention matrix."""


@dataclass(frozen=True)
class AttentionMaps:
    """The attention maps of one image.

    Attributes:
        path: The image file.
        image: (H, W, 3) uint8, the resized and cropped image the model saw.
        heads: (heads, H, W) float32, each head's CLS attention over the patches, upsampled
            to the image (nearest); each head sums to 1 over the pixels.
        masks: (heads, H, W) bool, the most attended pixels holding ``threshold`` of each
            head's mass, or None without a threshold.
        mean_mask: (H, W) bool, the same for the mean map, or None.
        threshold: The share of the mass kept by the masks, or None.
        patch_size: The model's patch side in pixels.
    """

    path: str
    image: NDArray[np.uint8]
    heads: NDArray[np.float32]
    masks: NDArray[np.bool_] | None
    mean_mask: NDArray[np.bool_] | None
    threshold: float | None
    patch_size: int

    @property
    def mean(self) -> NDArray[np.float32]:
        """(H, W) mean of the heads' maps (sums to 1)."""
        mean: NDArray[np.float32] = self.heads.mean(axis=0)
        return mean


@dataclass
class AttentionResult:
    """What :func:`attention` wrote.

    Attributes:
        written: Every file written (PNG grids, ``.npy`` maps and masks).
        skipped: (image, reason) for the images that could not be read.
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def cls_attention(backbone: Backbone, images: Tensor) -> Tensor:
    """The CLS query's attention over the patch tokens in the last block, per head.

    Args:
        backbone: The model (eval mode).
        images: (B, 3, H, W) normalised images, H and W multiples of the patch size.

    Returns:
        (B, heads, H / p, W / p) float32; each head's map is renormalised to sum to 1 (the
        CLS and register tokens also receive attention, which is left out).
    """
    attn = backbone.get_last_selfattention(images)
    rows = attn[:, :, 0, backbone.num_prefix_tokens :].float()
    rows = rows / rows.sum(dim=-1, keepdim=True)
    h, w = images.shape[-2] // backbone.patch_size, images.shape[-1] // backbone.patch_size
    return rows.reshape(*rows.shape[:2], h, w)


def mass_threshold(maps: Tensor, share: float) -> Tensor:
    """The largest values of each map holding ``share`` of its mass (DINO's threshold).

    As the reference: sort each map ascending, normalise it to sum to 1, take the cumulative
    sum and keep the values whose cumulative sum exceeds ``1 - share``. The kept mass is
    then at least ``share``, and less than ``share`` without its smallest kept value.

    Args:
        maps: (..., N) non-negative maps (flattened).
        share: The mass to keep, in (0, 1].

    Returns:
        (..., N) bool, True at the kept positions.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {share}")
    values, order = torch.sort(maps, dim=-1)
    values = values / values.sum(dim=-1, keepdim=True)
    kept_sorted = torch.cumsum(values, dim=-1) > 1.0 - share
    kept = torch.empty_like(kept_sorted)
    kept.scatter_(-1, order, kept_sorted)  # back to the original positions
    return kept


def fit_to_patches(
    image: Image.Image, size: int, patch_size: int, resample: Image.Resampling
) -> Image.Image:
    """Resize the short side to ``size`` (long side at most ``MAX_ASPECT * size``), then
    centre-crop each side down to a multiple of the patch size.

    Returns:
        The image the model sees; both sides are multiples of ``patch_size`` (at least one
        patch).
    """
    if size < patch_size:
        raise ValueError(f"size {size} is smaller than the patch size {patch_size}")
    width, height = image.size
    scale = min(size / min(width, height), MAX_ASPECT * size / max(width, height))
    resized = rescale(image, scale, resample, min_side=patch_size)
    p = patch_size
    return center_crop(resized, resized.width // p * p, resized.height // p * p)


def _to_input(image: Image.Image, backbone: Backbone) -> Tensor:
    """(1, 3, H, W) normalised with the model's mean and std."""
    pre = backbone.config.preprocessing
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    return ((pixels - mean) / std).unsqueeze(0)


def attention_maps(
    backbone: Backbone,
    image: Image.Image,
    *,
    size: int = 480,
    threshold: float | None = None,
    path: str = "",
) -> AttentionMaps:
    """The last block's attention maps of one image.

    Args:
        backbone: The model (eval mode; its device is used).
        image: A PIL image of any mode (made RGB by :func:`dinokit.data.to_rgb`).
        size: Short side the image is resized to before cropping to the patch grid.
        threshold: Share of each map's mass the masks keep (the reference uses 0.6), or None.
        path: The image's file, for the record.
    """
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    pre = backbone.config.preprocessing
    resample = INTERPOLATIONS.get(pre.interpolation, Image.Resampling.BICUBIC)
    fitted = fit_to_patches(to_rgb(image), size, backbone.patch_size, resample)
    device = next(backbone.parameters()).device
    with torch.inference_mode():
        grid = cls_attention(backbone, _to_input(fitted, backbone).to(device))[0].cpu()
    p = backbone.patch_size
    masks = mean_mask = None
    if threshold is not None:
        flat = grid.flatten(1)
        masks = _upsample(mass_threshold(flat, threshold).view_as(grid), p).numpy()
        mean = flat.mean(dim=0)
        mean_mask = _upsample(mass_threshold(mean, threshold).view(grid.shape[1:]), p).numpy()
    # Nearest upsampling repeats each patch p * p times: divide to keep the sum at 1.
    heads = (_upsample(grid, p) / (p * p)).numpy().astype(np.float32)
    return AttentionMaps(
        path=path,
        image=np.asarray(fitted, dtype=np.uint8),
        heads=heads,
        masks=masks,
        mean_mask=mean_mask,
        threshold=threshold,
        patch_size=p,
    )


def _upsample(grid: Tensor, patch_size: int) -> Tensor:
    """(..., h, w) -> (..., h * p, w * p), each value repeated over its patch."""
    return grid.repeat_interleave(patch_size, dim=-2).repeat_interleave(patch_size, dim=-1)


def save_attention(
    maps: AttentionMaps, out: str | Path, stem: str, *, heads: str = "all"
) -> list[Path]:
    """Write the files of one image into ``out``, each atomically.

    ``<stem>.png``: the grid (image, mean overlay, and each head when ``heads`` is ``all``);
    ``<stem>.npy``: every head's map, (heads, H, W) float32 aligned with the image in the
    PNG; with a threshold, ``<stem>_mask.npy``: the masks, (heads, H, W) bool.

    Returns:
        The files written.
    """
    if heads not in HEAD_CHOICES:
        raise ValueError(f"heads must be one of {HEAD_CHOICES}, got {heads!r}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    grid = render_grid(
        maps.image,
        maps.heads,
        masks=maps.masks,
        mean_mask=maps.mean_mask,
        show_heads=heads == "all",
    )
    written = [
        atomic_write(folder / f"{stem}.png", lambda tmp: grid.save(tmp, format="PNG")),
        save_npy(folder / f"{stem}.npy", maps.heads),
    ]
    if maps.masks is not None:
        written.append(save_npy(folder / f"{stem}_mask.npy", maps.masks))
    return written


def _expand(images: Sequence[str | Path]) -> list[Path]:
    """Image files as given; folders replaced by the images they hold (recursively)."""
    from ..data.sources import list_images

    files: list[Path] = []
    for item in images:
        path = Path(item).expanduser()
        if path.is_dir():
            files.extend(record.path for record in list_images(path).records)
        else:
            files.append(path)
    return files


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}-{n}"
    used.add(stem)
    return stem


def attention(
    model: str | Path | Backbone,
    images: Sequence[str | Path],
    *,
    out: str | Path,
    size: int = 480,
    threshold: float | None = None,
    heads: str = "all",
    branch: str = "teacher",
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
) -> AttentionResult:
    """Attention maps of image files, written as PNG grids and ``.npy`` arrays.

    Args:
        model: A backbone, or anything :func:`dinokit.load` accepts.
        images: Image files or folders of images.
        out: Output folder (created); files are named after the images.
        size: Short side of the model input (cropped to a multiple of the patch size).
        threshold: Share of the attention mass the masks keep (e.g. 0.6), or None.
        heads: ``all`` (the PNG shows the mean and every head) or ``mean``.
        branch: With a run folder or checkpoint: ``teacher`` or ``student``.
        weights: With a registered name: as in :func:`dinokit.create_backbone`.
        device: Where to run (default: CUDA when available, else CPU).

    Returns:
        The files written and the images skipped (each unreadable image is logged in one
        line and skipped).

    Raises:
        ValueError: bad options, or no image could be read.
    """
    if heads not in HEAD_CHOICES:
        raise ValueError(f"heads must be one of {HEAD_CHOICES}, got {heads!r}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    files = _expand(images)
    if not files:
        raise ValueError("no images given: pass image files or folders")
    if device is None:
        device = resolve_device()
    if isinstance(model, Backbone):
        backbone = model.eval().to(device)
    else:
        from ..models.factory import load

        backbone = load(model, weights=weights, branch=branch, device=device)
    result = AttentionResult()
    used: set[str] = set()
    for path in files:
        try:
            image = open_image(path, draft_size=size)
        except ImageReadError as error:
            logger.warning("skipped %s: %s", error.path, error.reason)
            result.skipped.append((error.path, error.reason))
            continue
        maps = attention_maps(backbone, image, size=size, threshold=threshold, path=str(path))
        result.written.extend(save_attention(maps, out, _unique_stem(path, used), heads=heads))
    if not result.written:
        raise ValueError(
            f"none of the {len(files)} images could be read (first: {result.skipped[0][0]}: "
            f"{result.skipped[0][1]})"
        )
    logger.info(
        "attention maps of %d image(s) written to %s%s",
        len(files) - len(result.skipped),
        out,
        f" ({len(result.skipped)} skipped)" if result.skipped else "",
    )
    return result
