"""Per-step schedules of the DINO recipe: learning rate, weight decay, teacher momentum.

Follows ``cosine_scheduler`` in facebookresearch/dino ``utils.py`` and its use in
``main_dino.py`` (Caron et al., 2021, arXiv:2104.14294): a linear warm-up from
``start_warmup_value`` to ``base_value`` followed by a half cosine to ``final_value``.

Differences from the reference:

* Lengths are in steps (the recipe helpers take epochs and steps per epoch) and the result
  always has exactly ``total_steps`` values; a warm-up longer than the run is cut off at the
  end of the run (keeping its slope) instead of breaking the schedule.
* The cosine reaches ``final_value`` at the last step (the reference divides by the number
  of cosine steps, so it stops one step short: the teacher momentum never reaches 1).
* A run may end inside an epoch (a budget of time or steps), and a time budget may be refitted
  while it runs: :func:`respan` stretches what is left of each schedule over the new length.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .defaults import (
    BASE_LR,
    FINAL_TEACHER_MOMENTUM,
    LR_BATCH,
    LR_WARMUP_EPOCHS,
    MIN_LR,
    TEACHER_MOMENTUM,
    WEIGHT_DECAY,
    WEIGHT_DECAY_END,
)

logger = logging.getLogger(__name__)


def cosine_schedule(
    base_value: float,
    final_value: float,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    start_warmup_value: float = 0.0,
) -> NDArray[np.float64]:
    """Linear warm-up then half-cosine decay, one value per step.

    Step ``i < warmup_steps``: ``linspace(start_warmup_value, base_value, warmup_steps)[i]``.
    Cosine step ``i`` of ``n + 1`` (``n = total_steps - warmup_steps - 1``):
    ``final + 0.5 * (base - final) * (1 + cos(pi * i / n))``, so the first cosine step is
    ``base_value`` and the last is ``final_value`` (a single cosine step is ``base_value``).
    If ``warmup_steps >= total_steps`` the run is all warm-up, cut off after ``total_steps``.

    Args:
        base_value: Value at the end of the warm-up / start of the cosine.
        final_value: Value at the last step.
        total_steps: Number of steps, ``>= 1``.
        warmup_steps: Number of warm-up steps, ``>= 0``.
        start_warmup_value: Value at step 0 when there is a warm-up.

    Returns:
        ``(total_steps,)`` float64 array.
    """
    if total_steps < 1:
        raise ValueError(f"cosine_schedule: total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"cosine_schedule: warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps > total_steps:
        logger.warning(
            "cosine_schedule: warm-up (%d steps) is longer than the run (%d steps); it is cut "
            "off and the value never reaches %g",
            warmup_steps,
            total_steps,
            base_value,
        )
    warmup = np.linspace(start_warmup_value, base_value, warmup_steps)[:total_steps]
    n_cosine = total_steps - len(warmup)
    if n_cosine <= 1:
        cosine = np.full(n_cosine, base_value, dtype=np.float64)
    else:
        steps = np.arange(n_cosine, dtype=np.float64)
        cosine = final_value + 0.5 * (base_value - final_value) * (
            1.0 + np.cos(math.pi * steps / (n_cosine - 1))
        )
    schedule = np.concatenate((warmup, cosine)).astype(np.float64)
    return schedule


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """Linear scaling rule of the reference: ``base_lr * batch_size / 256``.

    Args:
        base_lr: Learning rate for a total batch of 256 images (reference 5e-4).
        batch_size: Total batch size over all processes (per-GPU batch x world size).

    Returns:
        The learning rate to use.
    """
    if batch_size < 1:
        raise ValueError(f"scaled_lr: batch_size must be >= 1, got {batch_size}")
    return base_lr * batch_size / LR_BATCH


@dataclass(frozen=True)
class Schedules:
    """The recipe's per-step values over a whole run, each ``(total_steps,)``.

    Attributes:
        lr: Learning rate: linear warm-up from 0, then cosine to the minimum.
        weight_decay: Cosine from the initial to the final weight decay, no warm-up.
        momentum: Teacher EMA momentum: cosine from its base value to 1.
        steps_per_epoch: Optimizer steps in one epoch.
    """

    lr: NDArray[np.float64]
    weight_decay: NDArray[np.float64]
    momentum: NDArray[np.float64]
    steps_per_epoch: int


def dino_schedules(
    *,
    n_epochs: int,
    steps_per_epoch: int,
    batch_size: int,
    base_lr: float = BASE_LR,
    min_lr: float = MIN_LR,
    warmup_epochs: float = LR_WARMUP_EPOCHS,
    weight_decay: float = WEIGHT_DECAY,
    weight_decay_end: float = WEIGHT_DECAY_END,
    momentum: float = TEACHER_MOMENTUM,
    total_steps: int | None = None,
) -> Schedules:
    """The reference's three schedules (``main_dino.py``, "init schedulers").

    Args:
        n_epochs: Number of epochs (the run's length when ``total_steps`` is None).
        steps_per_epoch: Optimizer steps per epoch.
        batch_size: Total batch size over all processes (scales the lr, :func:`scaled_lr`).
        base_lr: Learning rate for a batch of 256, reached at the end of the warm-up.
        min_lr: Final learning rate.
        warmup_epochs: lr warm-up in epochs, may be fractional (rounded to steps; cut off
            if longer than the run).
        weight_decay: Weight decay at step 0.
        weight_decay_end: Weight decay at the last step.
        momentum: Teacher momentum at step 0; 1.0 at the last step.
        total_steps: The run's length in steps, when it is not whole epochs (a budget).

    Returns:
        The schedules, ``total_steps`` (default ``n_epochs * steps_per_epoch``) values each.
    """
    if n_epochs < 1 or steps_per_epoch < 1:
        raise ValueError(
            f"need n_epochs >= 1 and steps_per_epoch >= 1, got {n_epochs} and {steps_per_epoch}"
        )
    total = n_epochs * steps_per_epoch if total_steps is None else total_steps
    return Schedules(
        lr=cosine_schedule(
            scaled_lr(base_lr, batch_size),
            min_lr,
            total_steps=total,
            warmup_steps=round(warmup_epochs * steps_per_epoch),
        ),
        weight_decay=cosine_schedule(weight_decay, weight_decay_end, total_steps=total),
        # The momentum is raised to 1 during training with a cosine (reference comment).
        momentum=cosine_schedule(momentum, FINAL_TEACHER_MOMENTUM, total_steps=total),
        steps_per_epoch=steps_per_epoch,
    )


def respan(schedules: Schedules, *, done: int, total_steps: int) -> Schedules:
    """The schedules of a run whose length changed after ``done`` steps, to ``total_steps``.

    The first ``done`` values are kept; what was left of each schedule (its values from step
    ``done`` to its end) is stretched or squeezed linearly over steps ``done`` to
    ``total_steps - 1``, so every schedule still ends at its final value on the last step (a
    single step left takes it) and a warm-up in progress keeps its share of the rest of the
    run.

    Args:
        schedules: The current schedules, ``(T,)`` each, with ``done < T``.
        done: Steps already taken.
        total_steps: The new length, ``> done``.

    Returns:
        New schedules, ``(total_steps,)`` each.
    """
    old_total = len(schedules.lr)
    if not 0 <= done < old_total or total_steps <= done:
        raise ValueError(
            f"respan: need 0 <= done < {old_total} and total_steps > done, got done={done}, "
            f"total_steps={total_steps}"
        )
    # One step left is the last: it takes the final values.
    first = done if total_steps - done > 1 else old_total - 1
    positions = np.linspace(first, old_total - 1, total_steps - done)
    steps = np.arange(old_total, dtype=np.float64)

    def stretch(values: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate((values[:done], np.interp(positions, steps, values)))

    return Schedules(
        lr=stretch(schedules.lr),
        weight_decay=stretch(schedules.weight_decay),
        momentum=stretch(schedules.momentum),
        steps_per_epoch=schedules.steps_per_epoch,
    )


def respanned_step(step: float, *, done: int, old_total: int, total_steps: int) -> float:
    """Where step ``step`` of the old schedules lands after :func:`respan` (steps already
    taken stay where they were): a warm-up's end in a refitted run, for instance.

    Args:
        step: A step of the old schedules (may be fractional).
        done: Steps already taken when the run was respanned.
        old_total: The old length.
        total_steps: The new length.
    """
    if step <= done or old_total - 1 <= done:
        return step
    return done + (step - done) * (total_steps - done - 1) / (old_total - 1 - done)
