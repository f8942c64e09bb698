"""Collapse warnings: only when a signature persists."""

from __future__ import annotations

import logging
import math

import pytest

from dinokit.training.monitor import CollapseWatch


def test_uniform_collapse_warns_once_after_patience(caplog: pytest.LogCaptureFixture) -> None:
    k = 1024
    flat = {"loss": math.log(k), "teacher_entropy": math.log(k), "kl": 0.0}
    watch = CollapseWatch(k, patience=5)
    with caplog.at_level(logging.WARNING):
        results = [watch.update(flat, step) for step in range(12)]
    assert results[:4] == [None] * 4
    assert results[4] == "uniform"
    assert results[5:] == [None] * 7  # warned once
    assert sum("possible collapse (uniform)" in r.message for r in caplog.records) == 1


def test_healthy_steps_reset_the_streak() -> None:
    k = 256
    flat = {"loss": math.log(k), "teacher_entropy": math.log(k), "kl": 0.0}
    healthy = {"loss": 3.0, "teacher_entropy": 2.0, "kl": 1.0}
    watch = CollapseWatch(k, patience=3)
    for step in range(10):
        assert watch.update(flat if step % 2 else healthy, step) is None


def test_one_hot_teacher_is_reported() -> None:
    peaked = {"loss": 0.5, "teacher_entropy": 0.001, "kl": 0.5}
    watch = CollapseWatch(64, patience=2)
    assert watch.update(peaked, 0) is None
    assert watch.update(peaked, 1) == "one-hot"
