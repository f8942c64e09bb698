"""Evaluation preprocessing: a PIL image to a normalised tensor, in one of four explicit modes.

``center-crop`` is DINO's evaluation transform (Caron et al., 2021, "Emerging Properties in
Self-Supervised Vision Transformers"; ``eval_linear.py``: ``Resize(256, bicubic)``,
``CenterCrop(224)``, ``ToTensor``, ``Normalize``) and gives the same pixels as those
torchvision transforms. The other modes keep every pixel: ``resize`` distorts the aspect,
``letterbox`` pads, ``native`` keeps the aspect with a variable output shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dinokit.data.modes import to_rgb

MODES: tuple[str, ...] = ("center-crop", "resize", "letterbox", "native")
"""The preprocessing modes, the first being the default of DINO's evaluation."""

INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
"""Interpolation names accepted by :class:`EvalTransform` (PIL filters, antialiased)."""

# Center-crop of an image more elongated than this resizes only the cropped region
# (PIL's ``box=``): same pixels within 1/255, without materialising a huge resized image.
_CROP_FIRST_ASPECT = 4.0


class EvalTransform:
    """A PIL image -> normalised ``(3, H, W)`` float32 tensor, for embedding and evaluation.

    Modes (``s = size``):

    * ``center-crop``: resize the short side to ``round(s / crop_pct)`` (256 for s=224), the
      long side to ``int(that * long / short)`` as torchvision does, then crop the central
      ``s x s``. Output ``(3, s, s)``.
    * ``resize``: squash to ``s x s`` (keeps every pixel, distorts the aspect).
    * ``letterbox``: resize so the long side is ``s`` keeping the aspect (short side rounded,
      at least 1 px), centre it on an ``s x s`` canvas. The padding is the mean colour, i.e.
      exactly 0 after normalisation (padding is done on the normalised tensor).
    * ``native``: resize the short side to ``s`` keeping the aspect; if the long side would
      exceed ``max_size`` (default ``4 * s``), scale so that it is ``max_size`` instead
      (bounded cost for very elongated images; the short side is then below ``s``); then
      round both sides to the nearest multiple of ``patch_size`` (at least one patch, at most
      ``max_size`` rounded down to a patch multiple) and resize to exactly that. Output shapes
      vary per image: batch them with batch size 1 or by equal shape (see
      :func:`collate_images`).

    Args:
        mode: One of :data:`MODES`.
        size: Target size ``s`` in pixels.
        mean: Per-channel RGB mean in 0..1 (from the model's config).
        std: Per-channel RGB standard deviation in 0..1.
        interpolation: One of :data:`INTERPOLATIONS`.
        patch_size: The model's patch size (used by ``native``).
        crop_pct: Crop fraction of ``center-crop`` (224/256 as in DINO).
        max_size: Longest side of ``native`` outputs; default ``4 * size``.
    """

    def __init__(
        self,
        mode: str,
        size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bicubic",
        patch_size: int = 16,
        crop_pct: float = 224 / 256,
        max_size: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {MODES}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {interpolation!r}; choose one of {tuple(INTERPOLATIONS)}"
            )
        if size < 1 or patch_size < 1:
            raise ValueError(f"size and patch_size must be >= 1, got {size} and {patch_size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (std > 0), got {mean} and {std}")
        if not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        max_size = 4 * size if max_size is None else max_size
        if max_size < size:
            raise ValueError(f"max_size ({max_size}) must be >= size ({size})")
        self.mode = mode
        self.size = size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation
        self.patch_size = patch_size
        self.crop_pct = crop_pct
        self.max_size = max_size
        self._resample = INTERPOLATIONS[interpolation]
        self._mean = torch.tensor(self.mean).view(3, 1, 1)
        self._std = torch.tensor(self.std).view(3, 1, 1)

    @property
    def resize_size(self) -> int:
        """Short side before the crop of ``center-crop`` (``round(size / crop_pct)``)."""
        return round(self.size / self.crop_pct)

    @property
    def draft_size(self) -> int:
        """Smallest short side an input needs for full-quality output (for JPEG draft mode)."""
        return self.resize_size if self.mode == "center-crop" else self.size

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(H, W)`` of the output tensor for an input of ``width x height`` pixels."""
        if self.mode == "native":
            new_width, new_height = self._native_size(width, height)
            return new_height, new_width
        return self.size, self.size

    def to_dict(self) -> dict[str, Any]:
        """The settings, JSON-serialisable (for output metadata)."""
        return {
            "mode": self.mode,
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "patch_size": self.patch_size,
            "crop_pct": self.crop_pct,
            "max_size": self.max_size,
        }

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({settings})"

    def __call__(self, image: Image.Image) -> Tensor:
        """Preprocesses one image.

        Args:
            image: A PIL image (converted with :func:`~dinokit.data.modes.to_rgb` if not RGB).

        Returns:
            ``(3, H, W)`` float32, normalised with ``mean``/``std``; ``H = W = size`` except
            in ``native`` mode (see :meth:`output_size`).
        """
        image = to_rgb(image)
        if self.mode == "center-crop":
            return self._normalise(self._center_crop(image))
        if self.mode == "resize":
            return self._normalise(image.resize((self.size, self.size), self._resample))
        if self.mode == "letterbox":
            return self._letterbox(image)
        return self._normalise(image.resize(self._native_size(*image.size), self._resample))

    def _normalise(self, image: Image.Image) -> Tensor:
        """RGB image -> ``(3, H, W)`` float32, as ``ToTensor`` then ``Normalize``."""
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        out = torch.empty(pixels.shape, dtype=torch.float32)
        out.copy_(pixels)  # converts and transposes in one pass
        return out.div_(255).sub_(self._mean).div_(self._std)

    def _center_crop(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
        # torchvision's CenterCrop offsets; the resized image is never smaller than the crop.
        left = round((new_width - self.size) / 2.0)
        top = round((new_height - self.size) / 2.0)
        if long / short <= _CROP_FIRST_ASPECT:
            resized = image.resize((new_width, new_height), self._resample)
            return resized.crop((left, top, left + self.size, top + self.size))
        sx, sy = width / new_width, height / new_height
        box = (left * sx, top * sy, (left + self.size) * sx, (top + self.size) * sy)
        return image.resize((self.size, self.size), self._resample, box=box)

    def _letterbox(self, image: Image.Image) -> Tensor:
        width, height = image.size
        scale = self.size / max(width, height)
        new_width = min(self.size, max(1, round(width * scale)))
        new_height = min(self.size, max(1, round(height * scale)))
        content = self._normalise(image.resize((new_width, new_height), self._resample))
        canvas = torch.zeros(3, self.size, self.size)
        top, left = (self.size - new_height) // 2, (self.size - new_width) // 2
        canvas[:, top : top + new_height, left : left + new_width] = content
        return canvas

    def _native_size(self, width: int, height: int) -> tuple[int, int]:
        """``(W, H)`` of a ``native`` output, multiples of ``patch_size``."""
        scale = self.size / min(width, height)
        if max(width, height) * scale > self.max_size:
            scale = self.max_size / max(width, height)
        p = self.patch_size
        cap = max(p, self.max_size // p * p)

        def snap(side: float) -> int:
            return min(cap, max(p, math.floor(side / p + 0.5) * p))

        return snap(width * scale), snap(height * scale)


def collate_images(batch: Sequence[Tensor]) -> Tensor:
    """Stacks equally shaped images into a batch.

    Args:
        batch: ``B`` tensors ``(3, H, W)`` of one shape.

    Returns:
        ``(B, 3, H, W)``.

    Raises:
        ValueError: The shapes differ (``native`` mode): use batch size 1, or group images by
            :meth:`EvalTransform.output_size` before batching.
    """
    if len(batch) == 0:
        raise ValueError("collate_images: empty batch")
    shapes = {tuple(t.shape) for t in batch}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot stack images of different shapes {sorted(shapes)}: 'native' preprocessing "
            "keeps each image's aspect ratio; use batch size 1 or group images of equal "
            "output_size, or a fixed-size mode (center-crop, resize, letterbox)"
        )
    return torch.stack(list(batch))
