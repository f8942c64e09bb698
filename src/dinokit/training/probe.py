"""How long one training step takes on this machine: the measure a time budget is cut by.

:func:`measure_step_seconds` runs real steps (data loading, both networks, the loss, the
optimizer) on a throw-away copy of the run's state, so the run itself starts untouched.
The first steps start the loader's workers and warm the kernels up: they are not timed. The
workers keep only one batch ready each, as in the run once its queue has drained (a deeper
queue, filled while the first steps run, would hide the loading time).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from ..runtime.distributed import ProcessInfo, all_gather_objects
from ..runtime.precision import autocast_context
from .data import EpochBatchSampler, SeededViews, epoch_loader
from .loop import train_step
from .state import TrainState

logger = logging.getLogger(__name__)

#: Steps that start the loader and warm up, not timed.
WARMUP_STEPS = 2
#: Timed steps, at least and at most (fewer when the time share runs out).
MIN_TIMED_STEPS, MAX_TIMED_STEPS = 2, 10


@dataclass(frozen=True)
class StepTiming:
    """The probe's result: ``seconds`` per step, averaged over ``steps`` timed steps."""

    seconds: float
    steps: int


def measure_step_seconds(
    state: TrainState, dataset: SeededViews, *, process: ProcessInfo, max_seconds: float
) -> StepTiming:
    """Time training steps of ``state`` (which they change: pass a copy to throw away).

    Args:
        state: A freshly built run state, its schedules long enough for a few steps.
        dataset: The run's multi-crop views.
        process: This process's place in the job; every process times its own steps and
            the slowest sets the pace.
        max_seconds: Stop timing once this much time has passed (after the minimum steps).

    Returns:
        Seconds per step and how many steps were timed.
    """
    config, device = state.config, process.device
    cuda = device.type == "cuda"
    autocast = autocast_context(config.precision, device)
    sampler = EpochBatchSampler(
        len(dataset),
        config.batch_size,
        seed=config.seed,
        epoch=0,
        rank=process.rank,
        world_size=process.world_size,
    )
    started = time.perf_counter()
    durations: list[float] = []
    last = started
    loader = epoch_loader(dataset, sampler, workers=config.workers, pin_memory=cuda, prefetch=1)
    for i, batch in enumerate(loader):
        if isinstance(batch.images, list):
            views = [v.to(device, non_blocking=cuda) for v in batch.images]
            train_step(state, views, autocast)
        if cuda:
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        if i >= WARMUP_STEPS or len(sampler) <= WARMUP_STEPS:
            durations.append(now - last)
        last = now
        if len(durations) >= MAX_TIMED_STEPS or (
            len(durations) >= MIN_TIMED_STEPS and now - started >= max_seconds
        ):
            break
    if not durations:
        durations.append(last - started)  # an epoch shorter than the warm-up
    seconds = sum(durations) / len(durations)
    seconds = max(float(s) for s in all_gather_objects(seconds))  # the slowest process
    logger.info(
        "budget: %.3f s per step (batch %d per process, %d steps timed in %.0f s)",
        seconds,
        config.batch_size,
        len(durations),
        time.perf_counter() - started,
    )
    return StepTiming(seconds=seconds, steps=len(durations))
