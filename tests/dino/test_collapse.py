"""Tests for dinokit.dino.collapse (DINO paper, "Avoiding collapse")."""

from __future__ import annotations

import math

import pytest
import torch

from dinokit.dino.collapse import collapse_signature
from dinokit.dino.loss import DINOLoss


def test_collapse_signatures() -> None:
    k = 16
    uniform = DINOLoss(k, n_epochs=1)
    uniform(torch.zeros(6, k), torch.zeros(4, k), 0)
    assert uniform.last_stats["loss"] == pytest.approx(math.log(k), rel=1e-6)
    assert collapse_signature(uniform.last_stats, k) == "uniform"

    one_hot = DINOLoss(k, n_epochs=1)
    teacher = torch.zeros(4, k)
    teacher[:, 3] = 5.0
    one_hot(torch.randn(6, k), teacher, 0)
    assert one_hot.last_stats["teacher_entropy"] < 1e-6
    assert collapse_signature(one_hot.last_stats, k) == "one-hot"

    healthy = DINOLoss(k, n_epochs=1)
    healthy(torch.randn(6, k), torch.randn(4, k) * 0.1, 0)
    assert collapse_signature(healthy.last_stats, k) is None
    assert collapse_signature({}, k) is None
    assert DINOLoss(k, n_epochs=1).last_stats == {}
