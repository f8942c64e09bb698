"""Tests for dinokit.dino.schedules (reference: facebookresearch/dino utils.cosine_scheduler)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dinokit.dino.schedules import Schedules, cosine_schedule, dino_schedules, scaled_lr


def _cosine(base: float, final: float, i: int, n: int) -> float:
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / n))


def test_cosine_values_at_known_steps() -> None:
    sched = cosine_schedule(1.0, 0.1, total_steps=101)
    assert sched.shape == (101,)
    assert sched.dtype == np.float64
    for i in (0, 1, 25, 50, 75, 99, 100):
        assert sched[i] == pytest.approx(_cosine(1.0, 0.1, i, 100), abs=1e-12)
    assert sched[0] == pytest.approx(1.0)
    assert sched[50] == pytest.approx(0.55)
    assert sched[-1] == pytest.approx(0.1)
    assert np.all(np.diff(sched) <= 0)


def test_linear_warmup_then_cosine() -> None:
    sched = cosine_schedule(2.0, 0.0, total_steps=30, warmup_steps=10, start_warmup_value=0.5)
    assert len(sched) == 30
    np.testing.assert_allclose(sched[:10], np.linspace(0.5, 2.0, 10))
    assert np.allclose(np.diff(sched[:10]), 1.5 / 9)
    for i in range(20):
        assert sched[10 + i] == pytest.approx(_cosine(2.0, 0.0, i, 19), abs=1e-12)


@pytest.mark.parametrize(("total", "warmup"), [(1, 0), (1, 1), (1, 50), (5, 5), (5, 20), (2, 0)])
def test_short_runs_have_exact_length(total: int, warmup: int) -> None:
    sched = cosine_schedule(1.0, 0.0, total_steps=total, warmup_steps=warmup)
    assert len(sched) == total
    assert np.all(np.isfinite(sched))


def test_warmup_longer_than_run_is_cut_off(caplog: pytest.LogCaptureFixture) -> None:
    sched = cosine_schedule(1.0, 0.0, total_steps=5, warmup_steps=20)
    assert "longer than the run" in caplog.text
    np.testing.assert_allclose(sched, np.linspace(0.0, 1.0, 20)[:5])
    assert cosine_schedule(3.0, 0.0, total_steps=1)[0] == 3.0


def test_invalid_lengths() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        cosine_schedule(1.0, 0.0, total_steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(1.0, 0.0, total_steps=3, warmup_steps=-1)
    with pytest.raises(ValueError, match="n_epochs"):
        dino_schedules(n_epochs=0, steps_per_epoch=3, batch_size=256)


def test_scaled_lr_is_the_linear_scaling_rule() -> None:
    assert scaled_lr(5e-4, 256) == pytest.approx(5e-4)
    assert scaled_lr(5e-4, 1024) == pytest.approx(2e-3)
    assert scaled_lr(5e-4, 64) == pytest.approx(1.25e-4)
    with pytest.raises(ValueError):
        scaled_lr(5e-4, 0)


def recipe(n_epochs: int, steps_per_epoch: int, batch_size: int = 256) -> Schedules:
    """The schedules with every value left at the reference's (main_dino.py)."""
    return dino_schedules(n_epochs=n_epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size)


def test_lr_schedule_recipe() -> None:
    sched = recipe(20, 10, batch_size=512).lr
    peak = scaled_lr(5e-4, 512)
    assert len(sched) == 200
    assert sched[0] == 0.0
    np.testing.assert_allclose(sched[:100], np.linspace(0.0, peak, 100))
    assert sched[100] == pytest.approx(peak)
    assert sched[-1] == pytest.approx(1e-6)
    assert sched.max() == pytest.approx(peak)


def test_lr_schedule_one_epoch_with_default_warmup() -> None:
    sched = recipe(1, 7, batch_size=64).lr
    assert len(sched) == 7
    assert np.all(np.diff(sched) > 0)
    assert sched[-1] < scaled_lr(5e-4, 64)


def test_fractional_warmup_is_rounded_to_steps() -> None:
    sched = dino_schedules(n_epochs=4, steps_per_epoch=10, batch_size=256, warmup_epochs=0.25)
    # 0.25 x 10 = 2.5 warm-up steps, rounded half to even: 2, then the cosine from the peak.
    np.testing.assert_allclose(sched.lr[:3], [0.0, 5e-4, 5e-4])
    assert sched.lr[3] < 5e-4


def test_weight_decay_recipe() -> None:
    sched = recipe(3, 11).weight_decay
    assert len(sched) == 33
    assert sched[0] == pytest.approx(0.04)
    assert sched[-1] == pytest.approx(0.4)
    assert np.all(np.diff(sched) >= 0)


@pytest.mark.parametrize(("n_epochs", "steps"), [(100, 50), (1, 1), (1, 2), (2, 3)])
def test_teacher_momentum_recipe(n_epochs: int, steps: int) -> None:
    sched = recipe(n_epochs, steps).momentum
    assert len(sched) == n_epochs * steps
    assert sched[0] == pytest.approx(0.996)
    assert np.all(np.diff(sched) >= 0)
    if len(sched) > 1:
        assert sched[-1] == 1.0
    assert np.all(sched <= 1.0)
