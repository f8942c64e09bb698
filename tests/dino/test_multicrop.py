"""Tests for dinokit.dino.multicrop (reference: facebookresearch/dino DataAugmentationDINO).

Random decisions are checked statistically with torch's RNG seeded, so they are
deterministic; tolerances are several binomial standard deviations wide.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dinokit.dino import multicrop
from dinokit.dino.multicrop import MultiCropTransform, RandomGaussianBlur, RandomSolarize

N_DRAWS = 2000


def _image(width: int = 40, height: int = 30, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


class _RecordingImage:
    """Stands in for a PIL image: records the filters applied to it."""

    def __init__(self) -> None:
        self.radii: list[float] = []

    def filter(self, f: Any) -> _RecordingImage:
        self.radii.append(float(f.radius))
        return self


def test_output_count_and_shapes() -> None:
    torch.manual_seed(0)
    crops = MultiCropTransform()(_image())
    assert len(crops) == 10
    assert [tuple(c.shape) for c in crops] == [(3, 224, 224)] * 2 + [(3, 96, 96)] * 8
    assert all(c.dtype == torch.float32 for c in crops)
    small = MultiCropTransform(global_size=32, local_size=16, n_local_crops=0)
    assert small.n_crops == 2
    assert [tuple(c.shape) for c in small(_image())] == [(3, 32, 32)] * 2


def test_seeded_runs_are_reproducible() -> None:
    transform = MultiCropTransform(global_size=32, local_size=16, n_local_crops=3)
    torch.manual_seed(5)
    first = transform(_image())
    torch.manual_seed(5)
    second = transform(_image())
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("size", "mode"), [((1, 1), "RGB"), ((5, 300), "RGB"), ((300, 5), "L"), ((7, 9), "RGBA")]
)
def test_tiny_and_odd_images(size: tuple[int, int], mode: str) -> None:
    torch.manual_seed(0)
    transform = MultiCropTransform(global_size=24, local_size=8, n_local_crops=2)
    for _ in range(5):
        crops = transform(_image(*size, mode=mode))
        assert [tuple(c.shape) for c in crops] == [(3, 24, 24)] * 2 + [(3, 8, 8)] * 2
        assert all(torch.isfinite(c).all() for c in crops)


def test_reference_pipeline_structure() -> None:
    transform = MultiCropTransform(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    views = {
        "global1": (transform.global_transform_1, 224, (0.4, 1.0), [1.0], []),
        "global2": (transform.global_transform_2, 224, (0.4, 1.0), [0.1], [0.2]),
        "local": (transform.local_transform, 96, (0.05, 0.4), [0.5], []),
    }
    for name, (pipeline, size, scale, blur_p, solarize_p) in views.items():
        steps: list[Any] = pipeline.transforms
        crop = steps[0]
        assert isinstance(crop, T.RandomResizedCrop), name
        assert crop.size == (size, size)
        assert crop.scale == scale
        assert crop.interpolation == T.InterpolationMode.BICUBIC
        assert isinstance(steps[1], T.RandomHorizontalFlip) and steps[1].p == 0.5
        assert isinstance(steps[2], T.RandomApply) and steps[2].p == 0.8
        jitter = steps[2].transforms[0]
        assert isinstance(jitter, T.ColorJitter)
        assert jitter.brightness == (0.6, 1.4) and jitter.contrast == (0.6, 1.4)
        assert jitter.saturation == (0.8, 1.2) and jitter.hue == (-0.1, 0.1)
        assert isinstance(steps[3], T.RandomGrayscale) and steps[3].p == 0.2
        assert [s.p for s in steps if isinstance(s, RandomGaussianBlur)] == blur_p
        assert [s.p for s in steps if isinstance(s, RandomSolarize)] == solarize_p
        assert isinstance(steps[-1], T.Normalize)
        assert list(steps[-1].mean) == [0.5] * 3 and list(steps[-1].std) == [0.25] * 3


def _blur_radii(transform: MultiCropTransform) -> set[tuple[float, float]]:
    pipelines = (
        transform.global_transform_1,
        transform.global_transform_2,
        transform.local_transform,
    )
    return {
        step.radius
        for pipeline in pipelines
        for step in pipeline.transforms
        if isinstance(step, RandomGaussianBlur)
    }


def test_blur_radius_is_the_reference_at_224_and_scales_with_the_global_size() -> None:
    # Reference utils.GaussianBlur: radius ~ U(0.1, 2.0) px on every view at 224/96 px.
    assert _blur_radii(MultiCropTransform()) == {(0.1, 2.0)}
    # A 32 px global crop is blurred as much relative to its content: 32/224 of the radius.
    (small,) = _blur_radii(MultiCropTransform(global_size=32, local_size=16))
    assert small == pytest.approx((0.1 * 32 / 224, 2.0 * 32 / 224))
    assert _blur_radii(MultiCropTransform(global_size=32, blur_radius=(0.5, 1.0))) == {(0.5, 1.0)}


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_blur_applied_with_probability_p(p: float) -> None:
    torch.manual_seed(0)
    blur = RandomGaussianBlur(p)
    img = _RecordingImage()
    for _ in range(N_DRAWS):
        blur(img)  # duck-typed: only .filter() is used
    fraction = len(img.radii) / N_DRAWS
    assert fraction == pytest.approx(p, abs=0.035)
    if p == 1.0:
        assert fraction == 1.0
    if img.radii:
        assert min(img.radii) >= 0.1 and max(img.radii) <= 2.0
    if p >= 0.5:
        assert np.mean(img.radii) == pytest.approx(1.05, abs=0.05)


def test_blur_really_blurs() -> None:
    torch.manual_seed(0)
    img = _image(16, 16)
    out = RandomGaussianBlur(1.0, radius=(2.0, 2.0))(img)
    assert np.asarray(out).std() < np.asarray(img).std()


def test_solarize_probability_and_threshold() -> None:
    torch.manual_seed(0)
    bright = Image.new("RGB", (1, 1), (200, 100, 128))
    solarize = RandomSolarize(0.2)
    outputs = [solarize(bright).getpixel((0, 0)) for _ in range(N_DRAWS)]
    solarized = [o for o in outputs if o != (200, 100, 128)]
    assert set(solarized) == {(55, 100, 127)}  # >= 128 inverted, below kept
    assert len(solarized) / N_DRAWS == pytest.approx(0.2, abs=0.03)


def test_solarize_only_on_global_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the whole transform and record which view each random-apply step touched."""
    calls: dict[str, list[bool]] = defaultdict(list)
    original_blur, original_solarize = RandomGaussianBlur.__call__, RandomSolarize.__call__

    def record(kind: str, original: Any) -> Any:
        def wrapped(self: Any, img: Image.Image) -> Image.Image:
            out: Image.Image = original(self, img)
            calls[f"{kind}{self.p}"].append(out is not img)
            return out

        return wrapped

    monkeypatch.setattr(RandomGaussianBlur, "__call__", record("blur", original_blur))
    monkeypatch.setattr(RandomSolarize, "__call__", record("solarize", original_solarize))
    torch.manual_seed(0)
    n_images = 400
    transform = MultiCropTransform(global_size=4, local_size=4, n_local_crops=2)
    img = _image(8, 8)
    for _ in range(n_images):
        transform(img)
    # One solarize decision per image (global 2), blur decisions per view.
    assert set(calls) == {"solarize0.2", "blur1.0", "blur0.1", "blur0.5"}
    assert len(calls["solarize0.2"]) == n_images
    assert len(calls["blur1.0"]) == len(calls["blur0.1"]) == n_images
    assert len(calls["blur0.5"]) == 2 * n_images
    for key, p, tol in [("solarize0.2", 0.2, 0.06), ("blur0.1", 0.1, 0.05), ("blur0.5", 0.5, 0.06)]:
        assert np.mean(calls[key]) == pytest.approx(p, abs=tol), key
    assert all(calls["blur1.0"])


def test_probability_constants_match_reference() -> None:
    assert (multicrop.BLUR_P_GLOBAL_1, multicrop.BLUR_P_GLOBAL_2, multicrop.BLUR_P_LOCAL) == (
        1.0,
        0.1,
        0.5,
    )
    assert multicrop.SOLARIZE_P_GLOBAL_2 == 0.2
    assert multicrop.BLUR_RADIUS == (0.1, 2.0)
    assert multicrop.COLOR_JITTER == (0.4, 0.4, 0.2, 0.1)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="n_local_crops"):
        MultiCropTransform(n_local_crops=-1)
    with pytest.raises(ValueError, match="mean and std"):
        MultiCropTransform(mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="p must be"):
        RandomGaussianBlur(1.5)
