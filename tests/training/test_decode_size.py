"""Large photos are decoded large enough that no training crop is upsampled.

The reference (facebookresearch/dino ``DataAugmentationDINO``) cuts every crop from the
fully decoded image and downsamples it. dinokit lets the JPEG decoder reduce the image by
1/2, 1/4 or 1/8 only while every crop RandomResizedCrop can draw keeps at least the view's
size: the crops then match those cut from the full decode at the same place, up to the
difference between the decoder's DCT scaling and a bicubic resize. All pixels are 8-bit
RGB; differences are in levels of 255.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import functional as F

from dinokit.data import DecodeSize, open_image
from dinokit.dino import MultiCropTransform
from dinokit.dino.multicrop import CROP_RATIO

#: The reference's views: (output size, RandomResizedCrop scale range).
GLOBAL = (224, (0.4, 1.0))
LOCAL = (96, (0.05, 0.4))
#: Mean |difference| allowed between a crop of the reduced decode and the same crop of the
#: full decode. Measured: at most 2.4 levels with the reduction kept to what the crops
#: allow (1/2 here), 4.9-23 levels when the image is decoded at 1/8 (the global-size rule).
MEAN_LEVELS = 3.0
SEEDS = range(6)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 1800 x 1800 JPEG (quality 95) with detail down to a few pixels everywhere."""
    rng = np.random.default_rng(0)
    texture = Image.fromarray((rng.random((300, 300, 3)) * 255).astype(np.uint8))
    path = tmp_path_factory.mktemp("photo") / "large.jpg"
    texture.resize((1800, 1800), Image.Resampling.BICUBIC).save(path, quality=95)
    return path


def smallest_crop(width: int, height: int, scale: tuple[float, float]) -> tuple[int, int]:
    """(h, w) of the narrowest crop RandomResizedCrop can draw: the least area, ratio 3/4."""
    area = width * height * scale[0]
    w = round(math.sqrt(area * CROP_RATIO[0]))
    return round(math.sqrt(area / CROP_RATIO[0])), w


def crop_boxes(image: Image.Image, scale: tuple[float, float]) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of seeded random crops and of the narrowest one, in ``image``."""
    boxes = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        boxes.append(tuple(RandomResizedCrop.get_params(image, list(scale), list(CROP_RATIO))))
    h, w = smallest_crop(image.width, image.height, scale)
    boxes.append((0, 0, h, w))
    return boxes


def crop_errors(photo: Path, need: DecodeSize, view: Any) -> list[float]:
    """Mean |difference| of each crop of the reduced decode from the same crop of the full one."""
    size, scale = view
    full = open_image(photo)
    reduced = open_image(photo, draft_size=need)
    factor = full.width / reduced.width  # the decoder's reduction, an exact power of two
    assert factor == full.height / reduced.height and factor in (1, 2, 4, 8)
    errors = []
    for top, left, h, w in crop_boxes(reduced, scale):
        ours = F.resized_crop(reduced, top, left, h, w, [size, size], InterpolationMode.BICUBIC)
        box = [round(v * factor) for v in (top, left, h, w)]
        reference = F.resized_crop(full, *box, [size, size], InterpolationMode.BICUBIC)
        diff = np.asarray(ours, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
        errors.append(float(np.abs(diff).mean()))
    return errors


def test_no_crop_of_the_reference_views_is_upsampled(photo: Path) -> None:
    transform = MultiCropTransform()  # the reference: 224 px from 40-100%, 96 px from 5-40%
    decoded = open_image(photo, draft_size=transform.decode_size)
    assert decoded.size == (900, 900)  # 1/2 is free; 1/4 would upsample the local crops
    for size, scale in (GLOBAL, LOCAL):
        assert min(smallest_crop(*decoded.size, scale)) >= size, (size, scale)
    # The needed area follows the reference formula: 96^2 / (0.05 * 3/4) = 496^2 pixels.
    assert transform.decode_size == DecodeSize(224, 96**2 / (0.05 * 0.75))


@pytest.mark.parametrize("view", [GLOBAL, LOCAL], ids=["global", "local"])
def test_crops_match_those_of_the_full_decode(photo: Path, view: Any) -> None:
    errors = crop_errors(photo, MultiCropTransform().decode_size, view)
    assert max(errors) <= MEAN_LEVELS, errors


@pytest.mark.parametrize("view", [GLOBAL, LOCAL], ids=["global", "local"])
def test_decoding_at_the_global_size_fails_the_comparison(photo: Path, view: Any) -> None:
    """The previous rule (short side >= the global size: 1/8 here) upsampled the crops."""
    assert min(open_image(photo, draft_size=GLOBAL[0]).size) == 225
    assert max(crop_errors(photo, DecodeSize(GLOBAL[0]), view)) > MEAN_LEVELS


def test_other_view_settings_decide_the_reduction(tmp_path: Path) -> None:
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (4000, 3000), (120, 80, 40)).save(path)
    # Reference views: A >= 496^2 allows 1/4 (1000 x 750), not 1/8 (500 x 375).
    assert open_image(path, draft_size=MultiCropTransform().decode_size).size == (1000, 750)
    # No local crops: the global crops alone (A >= 409^2, short side >= 224) allow 1/8.
    no_local = MultiCropTransform(n_local_crops=0).decode_size
    assert open_image(path, draft_size=no_local).size == (500, 375)
    # Local crops down to 1% of the image need A >= 1109^2 (1/2); down to 0.2%, all of it.
    small_crops = MultiCropTransform(local_scale=(0.01, 0.4)).decode_size
    assert open_image(path, draft_size=small_crops).size == (2000, 1500)
    tiny_crops = MultiCropTransform(local_scale=(0.002, 0.4)).decode_size
    assert open_image(path, draft_size=tiny_crops).size == (4000, 3000)
    assert MultiCropTransform(local_scale=(0.0, 0.4)).decode_size.area == math.inf
