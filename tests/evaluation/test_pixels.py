"""Raw-pixel baseline vectors against hand computations (fp32)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dinokit.evaluation import baseline_vectors, flatten_pixels, pixel_mean, raw_pixel_vectors


def _one_pixel(*rgb: tuple[int, int, int]) -> np.ndarray:
    return np.array(rgb, dtype=np.uint8).reshape(len(rgb), 1, 1, 3)


def test_centred_by_the_train_mean_and_unit_norm() -> None:
    # fp32. Train: pure red and pure blue -> mean (0.5, 0, 0.5).
    train = _one_pixel((255, 0, 0), (0, 0, 255))
    mean = pixel_mean(train)
    np.testing.assert_allclose(mean, [0.5, 0.0, 0.5], atol=1e-7)
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(raw_pixel_vectors(train, mean), [[r, 0, -r], [-r, 0, r]], atol=1e-6)
    # Val yellow: (1, 1, 0) - (0.5, 0, 0.5) = (0.5, 1, -0.5), norm sqrt(1.5); the train
    # mean, not the val mean, is the centre.
    val = raw_pixel_vectors(_one_pixel((255, 255, 0)), mean)
    np.testing.assert_allclose(val, [[0.5, 1.0, -0.5]] / np.float32(math.sqrt(1.5)), atol=1e-6)
    assert val.dtype == np.float32


def test_shapes_order_and_float_input() -> None:
    # fp32. (N, H, W, 3) -> (N, 3*H*W) in row-major (H, W, channel) order.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 3, 3), dtype=np.uint8)
    flat = flatten_pixels(images)
    assert flat.shape == (5, 36) and flat.dtype == np.float32
    assert flat[2, 3 * 3 * 1 + 3 * 2 + 1] == pytest.approx(images[2, 1, 2, 1] / 255)
    np.testing.assert_allclose(flatten_pixels(images / 255.0), flat, atol=1e-7)
    vectors = raw_pixel_vectors(images, pixel_mean(images))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    # A row equal to the mean has no direction: it stays zero instead of NaN.
    same = raw_pixel_vectors(images[:1], flatten_pixels(images[:1])[0])
    assert not np.any(same)


def test_bad_shapes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        flatten_pixels(np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="pixel_mean"):
        raw_pixel_vectors(np.zeros((1, 2, 2, 3), dtype=np.uint8), np.zeros(3, dtype=np.float32))


def test_baseline_vectors_centre_both_sets_by_the_training_mean() -> None:
    # fp32 arrays: the val image is centred by the train mean, not by its own.
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    val = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    train_x, val_x = baseline_vectors(train, val)
    mean = pixel_mean(train)
    np.testing.assert_array_equal(train_x, raw_pixel_vectors(train, mean))
    np.testing.assert_array_equal(val_x, raw_pixel_vectors(val, mean))
