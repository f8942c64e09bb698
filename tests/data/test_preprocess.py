from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from dinokit.data import MODES, EvalTransform, collate_images

from ._helpers import rgb_noise

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZES = {
    "square": (300, 300),
    "landscape": (400, 300),
    "portrait": (300, 400),
    "tiny": (1, 1),
    "elongated": (3, 500),
    "wide": (900, 40),
}


def _transform(mode: str, size: int = 224, **kwargs: Any) -> EvalTransform:
    return EvalTransform(mode, size, mean=MEAN, std=STD, **kwargs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", list(SIZES))
def test_output_shapes(mode: str, shape: str) -> None:
    width, height = SIZES[shape]
    transform = _transform(mode, 64, patch_size=16)
    out = transform(rgb_noise(width, height))
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert tuple(out.shape) == (3, *transform.output_size(width, height))
    if mode == "native":
        assert out.shape[1] % 16 == 0 and out.shape[2] % 16 == 0
        assert max(out.shape[1:]) <= transform.max_size
    else:
        assert tuple(out.shape) == (3, 64, 64)


def _dino_reference(image: Image.Image) -> torch.Tensor:
    """DINO's eval_linear.py validation transform."""
    reference = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    out: torch.Tensor = reference(image)
    return out


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (256, 256), (100, 60), (333, 999)])
def test_center_crop_matches_dino_eval(size: tuple[int, int]) -> None:
    image = rgb_noise(*size, seed=1)
    assert torch.equal(_transform("center-crop")(image), _dino_reference(image))


def test_center_crop_of_very_elongated_image_is_close_to_dino_eval() -> None:
    image = rgb_noise(2000, 100, seed=2)  # crops before resizing: bounded memory
    diff = (_transform("center-crop")(image) - _dino_reference(image)).abs().max()
    assert diff <= 1.01 / 255 / min(STD)


def test_center_crop_picks_the_centre() -> None:
    pattern = np.arange(200 * 300, dtype=np.int64).reshape(200, 300)
    rgb = np.stack([pattern % 256, pattern // 256 % 256, pattern // 65536], axis=-1)
    image = Image.fromarray(rgb.astype(np.uint8))
    # crop_pct=1 and size = short side: the resize is the identity, only the crop remains.
    transform = EvalTransform("center-crop", 200, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0)
    out = transform(image)
    expected = torch.from_numpy(rgb[:, 50:250].astype(np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(out, expected)


def test_resize_squashes_every_pixel() -> None:
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 100, 100))  # left half black
    out = EvalTransform("resize", 10, mean=(0, 0, 0), std=(1, 1, 1))(image)
    assert out.shape == (3, 10, 10)
    assert out[:, :, :4].max() < 0.05 and out[:, :, 6:].min() > 0.95


@pytest.mark.parametrize(
    ("size", "content"), [((200, 100), (32, 64)), ((100, 200), (64, 32)), ((7, 3), (27, 64))]
)
def test_letterbox_keeps_aspect_and_pads_with_zero(
    size: tuple[int, int], content: tuple[int, int]
) -> None:
    image = Image.new("RGB", size, (255, 255, 255))
    out = _transform("letterbox", 64)(image)
    assert out.shape == (3, 64, 64)
    inside = out.abs().sum(dim=0) > 0  # white is far from the mean
    rows, cols = torch.nonzero(inside, as_tuple=True)
    height = int(rows.max() - rows.min() + 1)
    width = int(cols.max() - cols.min() + 1)
    assert (height, width) == content
    assert int(inside.sum()) == height * width  # one rectangle, centred
    assert int(rows.min()) == (64 - height) // 2 and int(cols.min()) == (64 - width) // 2
    assert (out[:, ~inside] == 0).all()


def test_mean_colour_normalises_to_zero() -> None:
    mean_colour = Image.new("RGB", (10, 10), (128, 128, 128))
    out = EvalTransform("resize", 8, mean=(128 / 255,) * 3, std=(0.5,) * 3)(mean_colour)
    assert out.abs().max() < 1e-6


def test_native_rounds_to_patches_and_caps_long_side() -> None:
    transform = _transform("native", 224, patch_size=14)
    assert transform.output_size(400, 300) == (224, 294)  # 298.67 -> 21 patches
    assert transform.output_size(300, 400) == (294, 224)
    assert transform.output_size(1, 1) == (224, 224)
    assert transform.output_size(4000, 10) == (14, 896)  # long side capped at 4 * 224
    capped = _transform("native", 64, patch_size=16, max_size=100)
    assert capped.output_size(1000, 100) == (16, 96)  # max_size rounded down to patches
    tiny = _transform("native", 8, patch_size=16)
    assert tiny.output_size(10, 10) == (16, 16)  # at least one patch


def test_non_rgb_input_converted() -> None:
    out = _transform("resize", 16)(Image.new("L", (20, 20), 0))
    assert out.shape == (3, 16, 16)


def test_settings_and_validation() -> None:
    transform = _transform("center-crop", 96)
    assert transform.resize_size == 110 and transform.draft_size == 110
    assert _transform("letterbox", 96).draft_size == 96
    settings = transform.to_dict()
    assert settings["mode"] == "center-crop" and settings["mean"] == list(MEAN)
    assert "center-crop" in repr(transform)
    with pytest.raises(ValueError, match="letterbox"):
        _transform("crop")
    with pytest.raises(ValueError, match="bicubic"):
        _transform("resize", interpolation="cubic")
    with pytest.raises(ValueError, match="mean and std"):
        EvalTransform("resize", 8, mean=(0.5,), std=(1.0,))
    with pytest.raises(ValueError, match="max_size"):
        _transform("native", 64, max_size=32)


def test_collate_images() -> None:
    batch = collate_images([torch.zeros(3, 4, 5), torch.ones(3, 4, 5)])
    assert batch.shape == (2, 3, 4, 5)
    with pytest.raises(ValueError, match="native"):
        collate_images([torch.zeros(3, 4, 5), torch.zeros(3, 5, 4)])
