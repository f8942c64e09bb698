from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dinokit.data import ImageReadError, open_image
from dinokit.data.io import center_crop, rescale

from ._helpers import rgb_noise, write_jpeg


def _save(image: Image.Image, path: Path, **kwargs: Any) -> Path:
    image.save(path, **kwargs)
    return path


def test_grey_png(tmp_path: Path) -> None:
    out = open_image(_save(Image.new("L", (5, 4), 90), tmp_path / "g.png"))
    assert out.mode == "RGB" and out.size == (5, 4)
    assert (np.asarray(out) == 90).all()


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (2, 1), 0)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((1, 0), 1)
    out = open_image(_save(p, tmp_path / "p.png", transparency=0))
    assert np.asarray(out)[0].tolist() == [[255, 255, 255], [0, 0, 255]]


def test_rgba_png_over_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = open_image(_save(rgba, tmp_path / "a.png"))
    assert (np.asarray(out) == 255).all()


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (16, 16), (0, 0, 0, 0)), tmp_path / "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = np.asarray(open_image(path)).astype(int)
    assert out.min() >= 250  # no ink -> white


def test_sixteen_bit_png_gradient(tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 65535, 512).round().astype(np.uint16), (3, 1))
    path = _save(Image.fromarray(gradient), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(open_image(path))[..., 0].astype(int)
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 200  # scaled, not clipped to a few values


def test_exif_orientation_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(rgb_noise(40, 20), tmp_path / "r.jpg", exif=exif)
    assert Image.open(path).size == (40, 20)
    assert open_image(path).size == (20, 40)


@pytest.mark.parametrize("size", [(1, 1), (3, 500), (500, 3)])
def test_tiny_and_elongated(tmp_path: Path, size: tuple[int, int]) -> None:
    path = _save(rgb_noise(*size), tmp_path / "x.png")
    assert open_image(path).size == size


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert np.asarray(open_image(path))[0, 0].tolist() == [255, 0, 0]


def test_jpeg_draft_keeps_short_side(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "big.jpg", 1000, 600)
    drafted = open_image(path, draft_size=100)
    assert min(drafted.size) >= 100
    assert drafted.size == (250, 150)  # 1/4 scale; 1/8 would give 75 < 100
    assert open_image(path, draft_size=600).size == (1000, 600)
    assert open_image(path).size == (1000, 600)
    png = _save(rgb_noise(300, 200), tmp_path / "big.png")
    assert open_image(png, draft_size=50).size == (300, 200)  # only JPEGs are drafted


def test_rescale_and_center_crop() -> None:
    image = rgb_noise(101, 40)
    assert rescale(image, 0.25, Image.Resampling.LANCZOS).size == (25, 10)
    assert rescale(image, 0.01, Image.Resampling.LANCZOS, min_side=8).size == (8, 8)
    crop = center_crop(image, 10, 5)  # offsets (101 - 10) // 2 = 45 and (40 - 5) // 2 = 17
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(image)[17:22, 45:55])


def _reason(path: Path) -> str:
    with pytest.raises(ImageReadError) as info:
        open_image(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert info.value.path == str(path)
    reason: str = info.value.reason
    return reason


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.jpg").write_bytes(b"")
    assert "empty" in _reason(tmp_path / "e.jpg")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = write_jpeg(tmp_path / "full.jpg", 64, 64).read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated" in _reason(tmp_path / "t.jpg")


def test_text_renamed_jpg(tmp_path: Path) -> None:
    (tmp_path / "fake.jpg").write_text("hello, I am not a picture\n")
    assert "not an image" in _reason(tmp_path / "fake.jpg")


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _reason(tmp_path / "gone.jpg")


@pytest.mark.parametrize("limit", [60 * 60 - 1, 2 * 60 * 60])  # error, and PIL's warning range
def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    path = _save(Image.new("RGB", (120, 120)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    assert "too large" in _reason(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert open_image(path).size == (120, 120)


def test_error_pickles_and_rejects_bad_draft(tmp_path: Path) -> None:
    error = pickle.loads(pickle.dumps(ImageReadError("a.jpg", "empty file")))
    assert (error.path, error.reason) == ("a.jpg", "empty file")
    with pytest.raises(ValueError, match="draft_size"):
        open_image(tmp_path / "x.jpg", draft_size=0)
