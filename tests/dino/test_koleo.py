"""KoLeo regulariser against values derived from its formula (Sablayrolles et al., 2019;
DINOv2 ``KoLeoLoss``: ``-mean log(distance to the nearest other normalised vector + 1e-8)``)."""

from __future__ import annotations

import math

import pytest
import torch

from dinokit.dino import koleo_loss, koleo_per_crop
from dinokit.dino.koleo import KOLEO_EPS


def test_regular_polygon_by_hand() -> None:
    # n points evenly spaced on a circle: every nearest-neighbour chord is 2 sin(pi / n).
    for n in (3, 4, 6, 12):
        angles = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
        x = torch.stack([angles.cos(), angles.sin(), torch.zeros(n, dtype=torch.float64)], 1)
        expected = -math.log(2 * math.sin(math.pi / n) + KOLEO_EPS)
        assert float(koleo_loss(3.0 * x)) == pytest.approx(expected, abs=1e-6)


def test_nearest_neighbour_matches_brute_force() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 16)
    z = torch.nn.functional.normalize(x, dim=-1)
    distances = torch.cdist(z, z) + torch.eye(50) * 10  # never itself
    expected = -torch.log(distances.min(dim=1).values + KOLEO_EPS).mean()
    assert float(koleo_loss(x)) == pytest.approx(float(expected), abs=1e-5)


def test_gradient_spreads_clustered_vectors() -> None:
    torch.manual_seed(0)
    x = (torch.randn(1, 8) + 0.05 * torch.randn(32, 8)).requires_grad_(True)
    before = float(koleo_loss(x))
    optimizer = torch.optim.SGD([x], lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        koleo_loss(x).backward()
        optimizer.step()
    assert float(koleo_loss(x)) < before - 0.5  # the nearest-neighbour distances grew


def test_per_crop_does_not_pair_two_views_of_one_image() -> None:
    torch.manual_seed(0)
    crop = torch.randn(16, 8)
    # Two identical "views": together every row has a twin at distance 0, per crop none has.
    together = koleo_loss(torch.cat([crop, crop]))
    assert float(together) > 10  # -log(1e-8)
    assert float(koleo_per_crop(torch.cat([crop, crop]), 2)) == pytest.approx(
        2 * float(koleo_loss(crop)), rel=1e-6
    )


def test_rejects_a_single_vector() -> None:
    with pytest.raises(ValueError, match="n >= 2"):
        koleo_loss(torch.randn(1, 4))
