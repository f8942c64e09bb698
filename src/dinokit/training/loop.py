"""One DINO training step and one epoch (facebookresearch/dino ``train_one_epoch``).

Per step: set the scheduled lr / weight decay, teacher on the 2 global views, student on
all views, the loss (float32; plus the optional KoLeo term on the student's global CLS
tokens, DINOv2), backward, per-parameter clipping, the last layer's gradient
cancelled during its freeze, the optimizer step, then the teacher EMA.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import Batch, Failed
from ..dino import cancel_last_layer_gradients, koleo_per_crop, update_teacher
from ..runtime import distributed
from .optim import apply_schedules, clip_gradients
from .state import TrainState

logger = logging.getLogger(__name__)

N_GLOBAL_VIEWS = 2


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


@dataclass
class EpochOutcome:
    """What an epoch (possibly cut short) produced."""

    losses: list[float] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    stopped: bool = False  # by max_steps or an interrupt request


def train_step(
    state: TrainState, views: list[torch.Tensor], autocast: contextlib.AbstractContextManager[Any]
) -> dict[str, float]:
    """One optimisation step on a batch of multi-crop views.

    Args:
        state: The run state (updated in place).
        views: ``2 + N`` tensors ``(B, 3, h, w)``, global views first, on the device.
        autocast: The run's mixed-precision context (reusable).

    Returns:
        Scalars for logging: loss (DINO's), lr, weight decay, momentum, teacher
        temperature, entropy and KL; ``koleo`` (unweighted) when the run uses it.

    Raises:
        NonFiniteLossError: the loss is NaN or infinite (nothing was updated).
    """
    it = state.global_step
    sched = state.schedules
    lr, wd, momentum = float(sched.lr[it]), float(sched.weight_decay[it]), float(sched.momentum[it])
    apply_schedules(state.optimizer, lr=lr, weight_decay=wd)

    with autocast:
        with torch.no_grad():
            teacher_out = state.teacher(views[:N_GLOBAL_VIEWS])
        student_out, tokens = state.student_ddp(views, with_features=True)
    loss = state.loss(student_out, teacher_out, state.epoch)
    stats = state.loss.last_stats
    logged = {"loss": float(loss.item()), "teacher_entropy": stats["teacher_entropy"]}
    logged["kl"] = stats["kl"]
    koleo_weight = state.config.koleo or 0.0
    if koleo_weight > 0:
        global_tokens = tokens[: N_GLOBAL_VIEWS * views[0].shape[0]]
        koleo = koleo_per_crop(global_tokens, N_GLOBAL_VIEWS)  # float32, outside autocast
        logged["koleo"] = float(koleo.item())
        loss = loss + koleo_weight * koleo
    # Per-image means of equal shares: their mean over processes is the global batch's.
    # Every process then also sees the same non-finite loss and stops with the others.
    logged = _mean_over_processes(logged, loss.device)
    loss_value = logged["loss"] + koleo_weight * logged.get("koleo", 0.0)
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(
            f"loss is {loss_value} at epoch {state.epoch + 1}, step {state.step_in_epoch + 1}: "
            "training stopped, the last checkpoint is kept; try a lower --lr, "
            "--precision fp32, or a smaller --clip-grad"
        )
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    clip = state.config.clip_grad or 0.0  # resolved; 0 disables
    if clip > 0:
        state.scaler.unscale_(state.optimizer)
        clip_gradients(state.student, clip)
    if state.epoch_float < (state.config.freeze_last_layer or 0.0):
        cancel_last_layer_gradients(state.student.head)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    update_teacher(state.student, state.teacher, momentum)

    state.step_in_epoch += 1
    state.global_step += 1
    return {
        "loss": logged["loss"],
        "lr": lr,
        "weight_decay": wd,
        "momentum": momentum,
        "teacher_temp": stats["teacher_temp"],
        **logged,
    }


def _mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each value averaged over the processes (unchanged without a process group)."""
    if not distributed.is_initialized():
        return values
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    means = distributed.all_reduce_mean(stacked).tolist()
    return dict(zip(values, means, strict=True))


def train_one_epoch(
    state: TrainState,
    batches: Iterable[Batch],
    *,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[Any],
    on_step: Callable[[dict[str, float], int], None],
    should_stop: Callable[[], bool],
) -> EpochOutcome:
    """Run the rest of the current epoch (from ``state.step_in_epoch``).

    Args:
        state: The run state (updated in place).
        batches: This epoch's remaining batches of multi-crop views.
        device: Training device.
        autocast: The run's mixed-precision context.
        on_step: Called after each step with its stats and the batch size (logging,
            progress, periodic checkpoints).
        should_stop: Polled after each step (max_steps reached, Ctrl-C requested).
    """
    outcome = EpochOutcome()
    start = time.perf_counter()
    non_blocking = device.type == "cuda"
    for batch in batches:
        outcome.failed.extend(batch.failed)
        if batch.images is None or not isinstance(batch.images, list):
            # Every image of this batch was unreadable: keep the position (resume offsets
            # and schedules count batches), train nothing.
            state.step_in_epoch += 1
            state.global_step += 1
            continue
        views = [v.to(device, non_blocking=non_blocking) for v in batch.images]
        stats = train_step(state, views, autocast)
        n = int(views[0].shape[0])
        outcome.losses.append(stats["loss"])
        outcome.images += n
        on_step(stats, n)
        if should_stop():
            outcome.stopped = True
            break
    outcome.seconds = time.perf_counter() - start
    return outcome
