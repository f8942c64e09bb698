"""Linear probe on frozen features."""

from __future__ import annotations

import torch

from dinokit.evaluation import linear_probe


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]])
    return centres[labels] + torch.randn(n, 4, generator=gen), labels


def test_separable_classes_are_learned() -> None:
    x, y = _blobs(150, seed=0)
    xv, yv = _blobs(60, seed=1)
    result = linear_probe(x, y, xv, yv)
    assert result.accuracy == 1.0
    assert set(result.holdout_accuracy) == {1e-5, 1e-4, 1e-3, 1e-2}
    assert result.weight_decay in result.holdout_accuracy


def test_labels_absent_from_training_are_wrong() -> None:
    x, y = _blobs(90, seed=2)
    xv, yv = _blobs(30, seed=3)
    yv[:10] = -1
    result = linear_probe(x, y, xv, yv, weight_decays=(1e-4,))
    assert result.accuracy == 20 / 30
    assert result.holdout_accuracy == {}


def test_not_linearly_separable_is_near_chance() -> None:
    # XOR: a linear classifier cannot beat about half.
    x = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]).repeat(20, 1)
    y = torch.tensor([0, 0, 1, 1]).repeat(20)
    result = linear_probe(x, y, x, y, weight_decays=(1e-3,))
    assert result.accuracy <= 0.75
