"""Thumbnails: the one helper behind contact sheets, map points, report pages and the server."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from dinokit.data.thumbnails import encode_thumbnail, stream_thumbnails, thumbnail_image

from ._helpers import rgb_noise, write_jpeg


def test_fits_the_box_keeping_the_aspect(tmp_path: Path) -> None:
    wide = write_jpeg(tmp_path / "wide.jpg", 400, 100)
    assert thumbnail_image(wide, 96).size == (96, 24)
    small = write_jpeg(tmp_path / "small.jpg", 40, 30)
    assert thumbnail_image(small, 96).size == (40, 30)  # never enlarged


def test_upright_and_rgb(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = tmp_path / "r.jpg"
    rgb_noise(200, 100).save(rotated, exif=exif)
    assert thumbnail_image(rotated, 50).size == (25, 50)
    transparent = tmp_path / "a.png"
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(transparent)
    image = thumbnail_image(transparent, 32)
    assert image.mode == "RGB" and (np.asarray(image) == 255).all()  # over white


def test_a_large_jpeg_is_drafted_to_no_less_than_the_box(tmp_path: Path) -> None:
    # The decoder's 1/8 scale gives 250 x 200 >= 96: the thumbnail is then a small resize
    # of that, so it equals the thumbnail of the 1/8 decode.
    path = write_jpeg(tmp_path / "big.jpg", 2000, 1600)
    with Image.open(path) as opened:
        opened.draft("RGB", (250, 200))
        expected = opened.convert("RGB")
    expected.thumbnail((96, 96), Image.Resampling.BILINEAR)
    got = thumbnail_image(path, 96)
    assert got.size == expected.size == (96, 77)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_encoded_and_streamed_in_order(tmp_path: Path) -> None:
    paths = [write_jpeg(tmp_path / f"{i}.jpg", 60 + 10 * i, 40, seed=i) for i in range(6)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths.insert(2, broken)
    thumbs = list(stream_thumbnails(paths, 32, workers=2))
    assert [t.data is None for t in thumbs] == [False, False, True, False, False, False, False]
    assert thumbs[2].error == "not an image (format not recognised)"
    for path, thumb in zip(paths, thumbs, strict=True):
        if thumb.data is None:
            continue
        with Image.open(io.BytesIO(thumb.data)) as decoded:
            assert decoded.format == "JPEG" and decoded.size == (thumb.width, thumb.height)
        assert thumb.width == 32 and thumb.width == thumbnail_image(path, 32).width
    assert encode_thumbnail(paths[0], 32) == thumbs[0]
