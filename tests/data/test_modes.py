from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dinokit.data import to_rgb


def _pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def test_rgb_unchanged_and_grey_replicated() -> None:
    rgb = Image.new("RGB", (3, 2), (10, 20, 30))
    assert to_rgb(rgb) is rgb
    grey = Image.new("L", (3, 2), 77)
    assert (_pixels(to_rgb(grey)) == 77).all()
    one_bit = Image.new("1", (3, 2), 1)
    assert (_pixels(to_rgb(one_bit)) == 255).all()


def test_alpha_is_composited_over_white() -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (200, 0, 0, 255))
    out = _pixels(to_rgb(rgba))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [200, 0, 0]
    half = Image.new("LA", (1, 1), (0, 128))
    assert abs(int(_pixels(to_rgb(half))[0, 0, 0]) - 127) <= 1


def test_palette_with_transparency_index() -> None:
    p = Image.new("P", (2, 1), 0)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0
    out = _pixels(to_rgb(p))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [0, 255, 0]


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_full_range_scaled_not_clipped(mode: str) -> None:
    values = np.linspace(0, 65535, 256).round().astype(np.uint16)
    dtype = ">u2" if mode.endswith("B") else "<u2"
    image = Image.frombytes(mode, (256, 1), values.astype(dtype).tobytes())
    out = _pixels(to_rgb(image))[0, :, 0].astype(int)
    assert out[0] == 0 and out[-1] == 255
    assert np.all(np.diff(out) >= 0)
    assert abs(out[128] - 128) <= 1


def test_wide_int_and_float_ranges() -> None:
    sixteen_in_i = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert sixteen_in_i.mode == "I"
    assert _pixels(to_rgb(sixteen_in_i))[0, :, 0].tolist() == [0, 255]
    unit_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert _pixels(to_rgb(unit_float))[0, :, 0].tolist() == [0, 128, 255]
    signed = Image.fromarray(np.array([[-1000.0, 0.0, 1000.0, np.nan]], dtype=np.float32))
    assert _pixels(to_rgb(signed))[0, :, 0].tolist() == [0, 128, 255, 128]


def test_cmyk() -> None:
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # full magenta + yellow = red
    assert _pixels(to_rgb(cmyk))[0, 0].tolist() == [255, 0, 0]
