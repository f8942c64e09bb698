"""Label-free quality scores: known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dinokit.evaluation import effective_rank, quality_score, uniformity


def test_collapsed_embeddings_have_rank_one_and_uniformity_zero() -> None:
    x = np.tile(np.array([[3.0, 4.0, 0.0]], dtype=np.float32), (10, 1))
    assert effective_rank(x) == pytest.approx(1.0, abs=1e-6)
    assert uniformity(x) == pytest.approx(0.0, abs=1e-9)


def test_orthonormal_embeddings_use_every_direction() -> None:
    x = torch.eye(8)
    assert effective_rank(x) == pytest.approx(8.0, rel=1e-6)
    # Every pair is at squared distance 2: log exp(-2 * 2) = -4.
    assert uniformity(x) == pytest.approx(-4.0, abs=1e-6)
    score = quality_score(x)
    assert score.effective_rank_ratio == pytest.approx(1.0, rel=1e-6)


def test_two_equal_directions_hand_computed() -> None:
    # Singular values of [e1 x 4; e2 x 1]: 2 and 1 -> p = (2/3, 1/3).
    x = np.array([[1, 0]] * 4 + [[0, 1]], dtype=np.float32)
    p = np.array([2 / 3, 1 / 3])
    assert effective_rank(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)


def test_more_spread_is_better() -> None:
    gen = torch.Generator().manual_seed(0)
    spread = torch.randn(500, 32, generator=gen)
    narrow = torch.randn(500, 32, generator=gen) * 0.05 + torch.ones(32)
    assert quality_score(spread).effective_rank > quality_score(narrow).effective_rank
    assert quality_score(spread).uniformity < quality_score(narrow).uniformity
