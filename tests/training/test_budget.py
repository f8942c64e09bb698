"""``--budget``: a run's length as time or steps, every schedule spanning it.

The parsing, the fit of steps to time, the refit's stretching of the schedules, then runs of
the tiny ``vit_test`` (32 px images, CPU fp32) with a budget of steps and of time.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from dinokit.dino import dino_schedules, respan, respanned_step
from dinokit.dino.defaults import BASE_LR, MIN_LR
from dinokit.training import budget as budget_module
from dinokit.training import train
from dinokit.training.budget import BudgetClock, parse_budget, steps_for_time
from tests.training.test_resume import assert_same_run, differences
from tests.training.test_run import (
    STEPS_PER_EPOCH,
    fast_training,
    image_folder,
    last_checkpoint,
    resolve,
    step_records,
    tiny_config,
)

__all__ = ["fast_training", "image_folder"]  # shared fixtures


@pytest.mark.parametrize(
    ("text", "seconds", "steps"),
    [
        ("15m", 900.0, None),
        ("2h", 7200.0, None),
        ("1h30m", 5400.0, None),
        ("90s", 90.0, None),
        ("1.5h", 5400.0, None),
        ("10min", 600.0, None),
        ("500", None, 500),
    ],
)
def test_budget_is_time_or_steps(text: str, seconds: float | None, steps: int | None) -> None:
    budget = parse_budget(text)
    assert (budget.seconds, budget.steps) == (seconds, steps)
    assert budget.is_time == (seconds is not None)


@pytest.mark.parametrize("text", ["", "15x", "m", "0", "0m", "-5", "fast"])
def test_a_budget_that_is_neither_time_nor_steps_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="budget"):
        parse_budget(text)


def test_steps_for_time_rounds_down_and_keeps_one_step() -> None:
    assert steps_for_time(100.0, step_seconds=3.0) == 33
    assert steps_for_time(100.0, step_seconds=3.0, done=10) == 43
    assert steps_for_time(-5.0, step_seconds=3.0, done=10) == 11  # past the deadline: one more
    with pytest.raises(ValueError, match="step_seconds"):
        steps_for_time(10.0, step_seconds=0.0)


def test_respan_keeps_the_past_and_ends_every_schedule_at_its_final_value() -> None:
    old = dino_schedules(n_epochs=10, steps_per_epoch=10, batch_size=256, warmup_epochs=2)
    for total in (60, 150):
        new = respan(old, done=30, total_steps=total)
        for name in ("lr", "weight_decay", "momentum"):
            before, after = getattr(old, name), getattr(new, name)
            assert len(after) == total
            np.testing.assert_array_equal(after[:30], before[:30])  # what was run stays
            assert after[-1] == pytest.approx(before[-1], rel=1e-12)  # min lr, final wd, 1.0
            assert after[30] == pytest.approx(before[30], rel=1e-12)  # no jump at the refit
        # The cosine after the warm-up still only falls.
        assert np.all(np.diff(new.lr[30:]) <= 1e-15)
    # A refit inside the warm-up stretches what is left of it by the same factor.
    stretched = respan(old, done=10, total_steps=190)  # 90 steps left become 180
    peak = int(np.argmax(stretched.lr))
    assert stretched.lr[peak] == pytest.approx(BASE_LR, rel=1e-9)
    assert abs(peak - (10 + 2 * (19 - 10))) <= 1
    # respanned_step says where that warm-up now ends (the record config.yaml keeps).
    warmup_end = respanned_step(20, done=10, old_total=100, total_steps=190)
    assert warmup_end == pytest.approx(10 + 10 * 179 / 89)
    assert stretched.lr[round(warmup_end) - 1] == pytest.approx(BASE_LR, rel=2e-3)
    assert respanned_step(5, done=10, old_total=100, total_steps=190) == 5  # already run
    with pytest.raises(ValueError, match="respan"):
        respan(old, done=100, total_steps=120)


def test_the_clock_refits_only_when_the_pace_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: now[0])
    clock = BudgetClock(100.0, steps_per_epoch=1000, spent=10.0)  # 90 s left, no epoch end
    clock.start_steps(0)
    now[0] += 2.0  # two steps of 1 s: too few to judge the pace
    assert clock.fit(2, total=90) is None
    now[0] += 8.0  # 10 steps in 10 s: 80 s left at 1 s per step = 80 more
    assert clock.fit(10, total=90) is None  # 90 planned: within 2%
    assert clock.fit(10, total=120) == 90
    clock.reserve = 20.0  # the last evaluation and the exports: 20 s kept free
    assert clock.fit(10, total=90) == 70
    assert clock.left() == pytest.approx(80.0)


def test_the_clock_counts_each_epoch_end_ahead_once(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: now[0])
    clock = BudgetClock(200.0, steps_per_epoch=10, started=0.0)
    clock.start_steps(0)
    now[0] += 10.0  # 10 steps of 1 s, then an epoch end of 5 s (checkpoint, kNN)
    clock.epoch_end(5.0)
    now[0] += 5.0
    # 185 s left, 5 kept free for the last epoch end: 180 s of steps and epoch ends ahead.
    # At 1 s per step and 5 s per epoch end: 10 + 5 = 15 s per epoch, so 12 epochs = 120
    # more steps, 11 of whose ends fall before the run's own end (the reserve's).
    fitted = clock.fit(10, total=1000)
    assert fitted is not None
    steps_ahead = fitted - 10
    ends_ahead = (fitted - 1) // 10 - 1
    assert steps_ahead * 1.0 + ends_ahead * 5.0 <= 180.0 < (steps_ahead + 1) + ends_ahead * 5.0 + 5
    assert clock.fit(10, total=fitted) is None  # the plan holds at the same pace
    # The pace leaves the epoch ends out: it does not jump right after one.
    now[0] += 9.0  # 9 more steps
    assert clock.fit(19, total=fitted) is None


def test_a_budget_of_steps_ends_inside_an_epoch_with_every_schedule_done(
    image_folder: Path, tmp_path: Path
) -> None:
    steps = STEPS_PER_EPOCH + 2  # 7 steps of 5 per epoch: the run ends in its second epoch
    out = train(tiny_config(image_folder, tmp_path / "run", budget=str(steps)))
    records = step_records(out)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert records[-1]["lr"] == pytest.approx(MIN_LR, rel=1e-9)  # the cosine's end
    assert records[-1]["momentum"] == pytest.approx(1.0, rel=1e-12)
    checkpoint = last_checkpoint(out)
    assert (checkpoint["global_step"], checkpoint["epoch"]) == (steps, 1)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["budget"], saved["steps"], saved["epochs"]) == (str(steps), steps, 2)
    assert "budget 7" in (out / "config.yaml").read_text()
    # Every span is a share of the run: 10% lr warm-up, 1% last-layer freeze.
    run_epochs = steps / STEPS_PER_EPOCH
    assert saved["warmup_epochs"] == pytest.approx(0.1 * run_epochs)
    assert saved["freeze_last_layer"] == pytest.approx(0.01 * run_epochs)
    assert (out / "teacher.safetensors").is_file()


def test_a_budgeted_run_resumed_equals_a_straight_one(image_folder: Path, tmp_path: Path) -> None:
    budget = str(2 * STEPS_PER_EPOCH)  # the same length as the 2 epochs assert_same_run checks
    straight = train(tiny_config(image_folder, tmp_path / "straight", budget=budget))
    out = tmp_path / "stopped"
    train(tiny_config(image_folder, out, budget=budget, max_steps=3))
    train(tiny_config(image_folder, out, budget=budget, resume=True))
    assert_same_run(straight, out)


def test_a_time_budget_is_measured_then_spanned(image_folder: Path, tmp_path: Path) -> None:
    out = train(tiny_config(image_folder, tmp_path / "run", budget="4s"))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    steps = saved["steps"]
    assert saved["budget"] == "4s" and steps >= 1
    assert saved["epochs"] == math.ceil(steps / STEPS_PER_EPOCH)
    note = (out / "config.yaml").read_text().split("\nsteps:")[1].splitlines()[0]
    assert "budget 4s:" in note and "s per step measured over" in note
    checkpoint = last_checkpoint(out)
    assert checkpoint["global_step"] == steps  # it ran the steps it planned, refits included
    assert len(checkpoint["schedules"]["lr"]) == steps
    assert checkpoint["spent_seconds"] > 0
    if steps >= 2:  # a single step is the cosine's first value (a very slow machine)
        assert step_records(out)[-1]["lr"] == pytest.approx(MIN_LR, rel=1e-6)


def test_resuming_a_time_budget_keeps_its_steps_and_schedules(
    image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train(tiny_config(image_folder, out, budget="4s", max_steps=2))
    first = last_checkpoint(out)
    planned = first["dinokit"]["train_config"]["steps"]
    train(tiny_config(image_folder, out, budget="4s", resume=True))
    final = last_checkpoint(out)
    # The steps run before the interruption kept their scheduled values.
    assert not differences(first["schedules"]["lr"][:2], final["schedules"]["lr"][:2])
    if planned > 2:  # (a slow machine may plan only the 2 steps the first invocation ran)
        assert final["global_step"] >= 3
        assert final["spent_seconds"] > first["spent_seconds"]  # the time before counts


def test_the_batch_and_the_length_are_resolved_before_the_rules_that_read_them() -> None:
    config = resolve(
        tiny_config("unused", "unused", batch_size=None, budget="200", global_size=32),
        n_images=5_000,
    )
    # 32 px crops: batch 128 (39 steps per epoch of 5,000 images); 200 steps = 5.1 epochs.
    assert (config.batch_size, config.steps, config.epochs) == (128, 200, 6)
    assert config.sources["batch_size"] == "auto: global crops of 32 px"
    assert config.warmup_epochs == pytest.approx(0.1 * 200 / 39)
    small = resolve(tiny_config("unused", "unused", batch_size=None), n_images=100)
    assert small.batch_size == 16  # at most a quarter of 100 images, a power of two
    assert "4+ steps per epoch" in small.sources["batch_size"]


@pytest.mark.parametrize(
    ("model", "global_size", "expected"),
    [
        # docs/finetuning.md, section 1: the recipe measured on 32 px images.
        (
            "vit_small32",
            None,
            {
                "lr": 4e-3,
                "drop_path": 0.0,
                "use_bn_in_head": True,
                "local_crops": 4,
                "local_size": 16,
                "batch_size": 128,
            },
        ),
        # Larger crops keep the reference's (main_dino.py): 5e-4, 0.1, no BatchNorm, 8 x 96/224.
        (
            "vit_test",
            224,
            {
                "lr": BASE_LR,
                "drop_path": 0.1,
                "use_bn_in_head": False,
                "local_crops": 8,
                "local_size": 96,
                "batch_size": 32,
            },
        ),
    ],
)
def test_from_scratch_the_recipe_follows_the_image_size(
    model: str, global_size: int | None, expected: dict[str, object]
) -> None:
    auto = dict.fromkeys(
        ("lr", "drop_path", "use_bn_in_head", "local_crops", "local_size", "batch_size", "out_dim")
    )
    config = resolve(
        tiny_config("unused", "unused", model=model, global_size=global_size, **auto),
        n_images=5_000,
    )
    assert {name: getattr(config, name) for name in expected} == expected
    for name in expected:
        assert name in config.sources, name
