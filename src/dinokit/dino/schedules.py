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
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

#: Reference recipe defaults (``main_dino.py`` argparse).
DEFAULT_BASE_LR = 5e-4
DEFAULT_MIN_LR = 1e-6
DEFAULT_LR_WARMUP_EPOCHS = 10
DEFAULT_WEIGHT_DECAY = 0.04
DEFAULT_WEIGHT_DECAY_END = 0.4
DEFAULT_TEACHER_MOMENTUM = 0.996
FINAL_TEACHER_MOMENTUM = 1.0
#: The linear scaling rule's reference batch size (Goyal et al., 2017; ``main_dino.py``).
LR_REFERENCE_BATCH_SIZE = 256


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
    return base_lr * batch_size / LR_REFERENCE_BATCH_SIZE


def lr_schedule(
    *,
    batch_size: int,
    n_epochs: int,
    steps_per_epoch: int,
    base_lr: float = DEFAULT_BASE_LR,
    warmup_epochs: int = DEFAULT_LR_WARMUP_EPOCHS,
    min_lr: float = DEFAULT_MIN_LR,
) -> NDArray[np.float64]:
    """Learning rate per step: linear warm-up from 0 to ``scaled_lr(base_lr, batch_size)``
    over ``warmup_epochs``, then cosine to ``min_lr``.

    Args:
        batch_size: Total batch size over all processes.
        n_epochs: Number of epochs.
        steps_per_epoch: Optimizer steps per epoch.
        base_lr: Learning rate for a batch of 256 (see :func:`scaled_lr`).
        warmup_epochs: Warm-up length in epochs (cut off if longer than the run).
        min_lr: Final learning rate.

    Returns:
        ``(n_epochs * steps_per_epoch,)`` float64 array.
    """
    return cosine_schedule(
        scaled_lr(base_lr, batch_size),
        min_lr,
        total_steps=_total_steps(n_epochs, steps_per_epoch),
        warmup_steps=warmup_epochs * steps_per_epoch,
    )


def weight_decay_schedule(
    *,
    n_epochs: int,
    steps_per_epoch: int,
    start: float = DEFAULT_WEIGHT_DECAY,
    end: float = DEFAULT_WEIGHT_DECAY_END,
) -> NDArray[np.float64]:
    """Weight decay per step: cosine from ``start`` (0.04) to ``end`` (0.4), no warm-up.

    Args:
        n_epochs: Number of epochs.
        steps_per_epoch: Optimizer steps per epoch.
        start: Weight decay at step 0.
        end: Weight decay at the last step.

    Returns:
        ``(n_epochs * steps_per_epoch,)`` float64 array.
    """
    return cosine_schedule(start, end, total_steps=_total_steps(n_epochs, steps_per_epoch))


def teacher_momentum_schedule(
    *,
    n_epochs: int,
    steps_per_epoch: int,
    base: float = DEFAULT_TEACHER_MOMENTUM,
    final: float = FINAL_TEACHER_MOMENTUM,
) -> NDArray[np.float64]:
    """Teacher EMA momentum per step: cosine from ``base`` (0.996) to ``final`` (1.0).

    Args:
        n_epochs: Number of epochs.
        steps_per_epoch: Optimizer steps per epoch.
        base: Momentum at step 0.
        final: Momentum at the last step.

    Returns:
        ``(n_epochs * steps_per_epoch,)`` float64 array, non-decreasing when ``final >= base``.
    """
    return cosine_schedule(base, final, total_steps=_total_steps(n_epochs, steps_per_epoch))


def _total_steps(n_epochs: int, steps_per_epoch: int) -> int:
    if n_epochs < 1 or steps_per_epoch < 1:
        raise ValueError(
            f"need n_epochs >= 1 and steps_per_epoch >= 1, got {n_epochs} and {steps_per_epoch}"
        )
    return n_epochs * steps_per_epoch
