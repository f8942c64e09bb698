"""DINO multi-crop augmentation: 2 global and N local views of one image.

Follows ``DataAugmentationDINO``, ``GaussianBlur`` and ``Solarization`` in
facebookresearch/dino (``main_dino.py``, ``utils.py``; Caron et al., 2021,
arXiv:2104.14294; multi-crop from Caron et al., 2020, SwAV, arXiv:2006.09882), with the
BYOL colour pipeline (Grill et al., 2020, arXiv:2006.07733).

Per view: RandomResizedCrop (bicubic) -> horizontal flip -> colour jitter -> grayscale ->
Gaussian blur (PIL, radius ~ U(0.1, 2.0); p = 1.0 / 0.1 / 0.5 for global 1 / global 2 /
local) -> solarisation (global 2 only) -> ToTensor -> Normalize(mean, std).

Differences from the reference: random decisions use torch's RNG (seeded per DataLoader
worker, one ``torch.manual_seed`` makes a run reproducible) instead of Python's ``random``;
``mean``/``std`` are arguments (they belong to the backbone's preprocessing); non-RGB images
are converted to RGB. Blur probabilities are *apply* probabilities: DINOv2's blur class
inverts its argument, which is not copied here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from PIL import Image, ImageFilter, ImageOps
from torch import Tensor
from torchvision import transforms as T

from dinokit.data.io import DecodeSize

from .defaults import GLOBAL_SCALE, GLOBAL_SIZE, LOCAL_SCALE, LOCAL_SIZE, N_LOCAL_CROPS

logger = logging.getLogger(__name__)

#: RandomResizedCrop's aspect-ratio range (torchvision's default, kept by the reference).
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
#: ImageNet statistics: only a default; pass the backbone's own preprocessing values.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Probabilities and parameters of ``DataAugmentationDINO`` (facebookresearch/dino).
FLIP_P = 0.5
COLOR_JITTER_P = 0.8
#: ColorJitter(brightness, contrast, saturation, hue).
COLOR_JITTER = (0.4, 0.4, 0.2, 0.1)
GRAYSCALE_P = 0.2
BLUR_P_GLOBAL_1 = 1.0
BLUR_P_GLOBAL_2 = 0.1
BLUR_P_LOCAL = 0.5
#: Radius range of ``utils.GaussianBlur`` (PIL ``ImageFilter.GaussianBlur`` radius = sigma).
BLUR_RADIUS = (0.1, 2.0)
SOLARIZE_P_GLOBAL_2 = 0.2
#: ``PIL.ImageOps.solarize``'s default threshold, used by ``utils.Solarization``.
SOLARIZE_THRESHOLD = 128


def _uniform_draw() -> float:
    return float(torch.rand(()).item())


class RandomGaussianBlur:
    """With probability ``p``, blur a PIL image with a radius drawn from ``U(min, max)``.

    Mirrors the reference ``utils.GaussianBlur`` (PIL blur, whose radius is the Gaussian's
    standard deviation). ``p`` is the probability of *applying* the blur.

    Args:
        p: Probability of blurring.
        radius: ``(min, max)`` of the uniform radius, in pixels.
    """

    def __init__(self, p: float, radius: tuple[float, float] = BLUR_RADIUS) -> None:
        _check_probability("RandomGaussianBlur", p)
        self.p = p
        self.radius = radius

    def __call__(self, img: Image.Image) -> Image.Image:
        if _uniform_draw() >= self.p:
            return img
        low, high = self.radius
        radius = low + (high - low) * _uniform_draw()
        return img.filter(ImageFilter.GaussianBlur(radius=radius))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, radius={self.radius})"


class RandomSolarize:
    """With probability ``p``, invert the pixels at or above ``threshold`` (reference
    ``utils.Solarization``).

    Args:
        p: Probability of solarising.
        threshold: Pixel values ``>= threshold`` are inverted.
    """

    def __init__(self, p: float, threshold: int = SOLARIZE_THRESHOLD) -> None:
        _check_probability("RandomSolarize", p)
        self.p = p
        self.threshold = threshold

    def __call__(self, img: Image.Image) -> Image.Image:
        if _uniform_draw() >= self.p:
            return img
        return ImageOps.solarize(img, threshold=self.threshold)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, threshold={self.threshold})"


class MultiCropTransform:
    """Turn one image into ``[global1, global2, local1, ..., localN]`` normalised tensors.

    Args:
        global_size: Side of the global crops (224).
        local_size: Side of the local crops (96).
        n_local_crops: Number of local crops ``N`` (reference ``local_crops_number`` 8).
        global_scale: RandomResizedCrop area range of global crops.
        local_scale: RandomResizedCrop area range of local crops.
        mean: Per-channel normalisation mean, from the backbone's preprocessing config.
        std: Per-channel normalisation std, from the backbone's preprocessing config.
        blur_radius: ``(min, max)`` Gaussian blur radius in pixels. Default: the reference's
            ``(0.1, 2.0)`` scaled by ``global_size / 224``, so it is exactly the reference at
            224 px and blurs a 32 px crop as much, relative to its content, as the reference
            blurs a 224 px one (an absolute 2 px radius erases most of a 32 px image).

    Attributes:
        global_transform_1: Pipeline of the first global view (always blurred).
        global_transform_2: Pipeline of the second global view (rarely blurred, solarised).
        local_transform: Pipeline of every local view.
    """

    def __init__(
        self,
        *,
        global_size: int = GLOBAL_SIZE,
        local_size: int = LOCAL_SIZE,
        n_local_crops: int = N_LOCAL_CROPS,
        global_scale: tuple[float, float] = GLOBAL_SCALE,
        local_scale: tuple[float, float] = LOCAL_SCALE,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        blur_radius: tuple[float, float] | None = None,
    ) -> None:
        if global_size < 1 or local_size < 1:
            raise ValueError("MultiCropTransform: crop sizes must be >= 1")
        if n_local_crops < 0:
            raise ValueError(f"MultiCropTransform: n_local_crops must be >= 0, got {n_local_crops}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("MultiCropTransform: mean and std need 3 values (RGB)")
        self.n_local_crops = n_local_crops
        self._views = [(global_size, global_scale)]
        if n_local_crops:
            self._views.append((local_size, local_scale))
        if blur_radius is None:
            factor = global_size / GLOBAL_SIZE
            blur_radius = (BLUR_RADIUS[0] * factor, BLUR_RADIUS[1] * factor)
        self.blur_radius = blur_radius
        self.global_transform_1 = _view_pipeline(
            global_size, global_scale, [RandomGaussianBlur(BLUR_P_GLOBAL_1, blur_radius)], mean, std
        )
        self.global_transform_2 = _view_pipeline(
            global_size,
            global_scale,
            [RandomGaussianBlur(BLUR_P_GLOBAL_2, blur_radius), RandomSolarize(SOLARIZE_P_GLOBAL_2)],
            mean,
            std,
        )
        self.local_transform = _view_pipeline(
            local_size, local_scale, [RandomGaussianBlur(BLUR_P_LOCAL, blur_radius)], mean, std
        )

    @property
    def decode_size(self) -> DecodeSize:
        """What an image must keep when decoded for no crop of it to be upsampled.

        A crop of ``s`` of the image's area ``A`` with aspect ratio ``r`` in
        :data:`CROP_RATIO` has sides ``sqrt(A s r)`` and ``sqrt(A s / r)``, the smaller at
        least ``sqrt(A s_min r_min)`` (``r_min = min(ratio[0], 1 / ratio[1])`` = 3/4); it is
        then resized to the view's size. So none is upsampled while
        ``A >= size^2 / (s_min r_min)`` for every kind of view (local crops decide with
        the reference values: 96 px from 5% needs ``A >= 496^2``, 224 px from 40% only
        ``409^2``), and while the short side is at least the global size (torchvision's
        fallback crop spans a whole side). JPEG draft mode is used within those bounds.
        """
        r_min = min(CROP_RATIO[0], 1.0 / CROP_RATIO[1])
        area = max(
            size * size / (scale[0] * r_min) if scale[0] > 0 else math.inf
            for size, scale in self._views
        )
        return DecodeSize(max(size for size, _ in self._views), area)

    @property
    def n_crops(self) -> int:
        """Total number of views per image (2 global + ``n_local_crops``)."""
        return 2 + self.n_local_crops

    def __call__(self, img: Image.Image) -> list[Tensor]:
        """Augment one image.

        Args:
            img: A PIL image (converted to RGB if needed).

        Returns:
            ``[global1, global2, local1, ..., localN]``: two ``(3, global_size, global_size)``
            then ``N`` ``(3, local_size, local_size)`` float32 tensors.
        """
        if img.mode != "RGB":
            img = img.convert("RGB")
        crops: list[Tensor] = [self.global_transform_1(img), self.global_transform_2(img)]
        crops.extend(self.local_transform(img) for _ in range(self.n_local_crops))
        return crops

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(global_1={self.global_transform_1}, "
            f"global_2={self.global_transform_2}, local x{self.n_local_crops}="
            f"{self.local_transform})"
        )


def _view_pipeline(
    size: int,
    scale: tuple[float, float],
    extra: list[RandomGaussianBlur | RandomSolarize],
    mean: Sequence[float],
    std: Sequence[float],
) -> T.Compose:
    brightness, contrast, saturation, hue = COLOR_JITTER
    return T.Compose(
        [
            T.RandomResizedCrop(
                size, scale=scale, ratio=CROP_RATIO, interpolation=T.InterpolationMode.BICUBIC
            ),
            T.RandomHorizontalFlip(p=FLIP_P),
            T.RandomApply([T.ColorJitter(brightness, contrast, saturation, hue)], p=COLOR_JITTER_P),
            T.RandomGrayscale(p=GRAYSCALE_P),
            *extra,
            T.ToTensor(),
            T.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p must be in [0, 1], got {p}")
