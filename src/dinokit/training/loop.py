"""The DINO training loop: facebookresearch/dino ``train_one_epoch``, over the whole run.

Per step (:func:`train_step`): the scheduled lr / weight decay, teacher on the 2 global
views, student on all views, the loss (float32; plus the optional KoLeo term on the
student's global CLS tokens, DINOv2), backward, per-parameter clipping, the last layer's
gradient cancelled during its freeze, the optimizer step, then the teacher EMA.
Around the steps (:func:`train_loop`): the head warm-up, logging, checkpoints at every
epoch end (and every ``save_every`` steps), the kNN monitor, the run's end (its ``steps``,
which a budget may end inside an epoch; a time budget's are refitted to the measured pace),
and the early stops (Ctrl-C, ``max_steps``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from ..data import Failed
from ..dino import (
    cancel_last_layer_gradients,
    koleo_per_crop,
    respan,
    respanned_step,
    update_teacher,
)
from ..runtime import distributed
from ..runtime.distributed import ProcessInfo, all_gather_objects
from ..runtime.precision import autocast_context
from .budget import BudgetClock, epochs_note
from .checkpoint import LAST_CHECKPOINT, save_checkpoint
from .config import write_run_config
from .data import EpochBatchSampler, SeededViews, epoch_loader
from .optim import apply_schedules, clip_gradients, freeze_backbone
from .runlog import RunLog
from .state import TrainState

logger = logging.getLogger(__name__)

N_GLOBAL_VIEWS = 2
INTERRUPTED = "interrupt"
MAX_STEPS = "max_steps"
#: A time-budgeted run checks its pace at every epoch end and this often (share of the run).
REFIT_EVERY = 0.05


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def train_loop(
    state: TrainState,
    dataset: SeededViews,
    *,
    process: ProcessInfo,
    log: RunLog,
    out: Path,
    clock: BudgetClock | None = None,
) -> list[Failed]:
    """Train from the state's position to the end of the run, or to an early stop.

    Args:
        state: The run state (updated in place; a time budget's refit replaces its config
            and schedules).
        dataset: The multi-crop views of the training images.
        process: This process's place in the job (rank, world size, device).
        log: Where the run reports.
        out: The run folder (checkpoints).
        clock: A time budget's clock: the run's length follows the measured pace.

    Returns:
        The images that could not be read.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once a checkpoint is saved.
        NonFiniteLossError: the loss diverged (the last good checkpoint is kept).
    """
    config, device = state.config, process.device
    cuda = device.type == "cuda"
    autocast = autocast_context(config.precision, device)
    failed: list[Failed] = []
    measured = time.perf_counter()
    if not log.resumed:
        log.knn(state, autocast)  # the "before" number
    if clock is not None:
        clock.start_steps(state.global_step)
        clock.reserve = time.perf_counter() - measured  # the last measurement will take as long
    refit_every = max(1, round(REFIT_EVERY * config.steps))
    with _CtrlC() as ctrl_c:
        stop = _stop_reason(state, ctrl_c)  # a resumed run may have reached max_steps
        while state.global_step < state.config.steps and stop is None:
            sampler = EpochBatchSampler(
                len(dataset),
                config.batch_size,
                seed=config.seed,
                epoch=state.epoch,
                rank=process.rank,
                world_size=process.world_size,
                start_batch=state.step_in_epoch,  # mid-epoch resume
            )
            for batch in epoch_loader(dataset, sampler, workers=config.workers, pin_memory=cuda):
                failed.extend(batch.failed)
                # Head warm-up: a new head first trains alone, the backbone frozen under it.
                if config.head_warmup_epochs:
                    _freeze_backbone(state, state.epoch_float < config.head_warmup_epochs)
                if isinstance(batch.images, list):
                    views = [v.to(device, non_blocking=cuda) for v in batch.images]
                    stats = train_step(state, views, autocast)
                    log.step(state, stats, n_images=int(views[0].shape[0]))
                else:  # every image unreadable: keep the position (schedules count batches)
                    state.step_in_epoch += 1
                    state.global_step += 1
                if config.save_every and state.global_step % config.save_every == 0:
                    _save(state, out / LAST_CHECKPOINT, process, clock)
                if clock is not None and state.global_step % refit_every == 0:
                    _refit(state, clock, process, log, out)
                stop = _stop_reason(state, ctrl_c)
                if stop is not None or state.global_step >= state.config.steps:
                    break

            # ============ the end of an epoch, of the run, or an early stop ... ============
            epoch_end = time.perf_counter()
            run_done = state.global_step >= state.config.steps
            epoch_done = state.step_in_epoch == state.schedules.steps_per_epoch
            if epoch_done:
                state.epoch += 1
                state.step_in_epoch = 0
            _save(state, out / LAST_CHECKPOINT, process, clock)
            if epoch_done and config.keep_every and state.epoch % config.keep_every == 0:
                _save(state, out / f"checkpoints/epoch_{state.epoch:04d}.pt", process, clock)
            if stop == INTERRUPTED:  # also on an epoch's last step: stop, export nothing
                raise KeyboardInterrupt(
                    f"checkpoint saved to {out / LAST_CHECKPOINT}; continue with --resume"
                )
            if run_done or (epoch_done and state.epoch % config.eval_every == 0):
                log.knn(state, autocast)
            if clock is not None and not run_done:
                clock.epoch_end(time.perf_counter() - epoch_end)
                _refit(state, clock, process, log, out)
    return failed


def _refit(
    state: TrainState, clock: BudgetClock, process: ProcessInfo, log: RunLog, out: Path
) -> None:
    """Fit a time-budgeted run's length to its measured pace (the main process decides):
    what is left of each schedule is stretched over the new length, and ``config.yaml``
    records it."""
    config = state.config
    fitted = clock.fit(state.global_step, config.steps) if process.is_main else None
    total = all_gather_objects(fitted)[0]
    if total is None:
        return
    done, per_epoch = state.global_step, state.schedules.steps_per_epoch
    state.schedules = respan(state.schedules, done=done, total_steps=total)
    measured = config.sources.get("steps", "").split("; refitted")[0]
    note = f"{measured}; refitted at step {done} to the measured pace"
    # The lr warm-up is part of the stretched schedules: the record follows it.
    warmup = respanned_step(
        config.warmup_epochs * per_epoch, done=done, old_total=config.steps, total_steps=total
    )
    state.config = dataclasses.replace(
        config,
        steps=total,
        epochs=math.ceil(total / per_epoch),
        warmup_epochs=warmup / per_epoch,
        sources=config.sources
        | {"steps": note, "epochs": epochs_note(config.budget, total / per_epoch)},
    )
    log.set_total_steps(total)
    if process.is_main:
        write_run_config(out, state.config)
    large = abs(total - config.steps) >= 0.05 * config.steps  # small ones: debug lines
    logger.log(
        logging.INFO if large else logging.DEBUG,
        "budget %s: %d steps instead of %d at the pace measured so far (%.0f s left)",
        config.budget,
        total,
        config.steps,
        clock.left(),
    )


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
    config, it, sched = state.config, state.global_step, state.schedules
    lr, wd, momentum = float(sched.lr[it]), float(sched.weight_decay[it]), float(sched.momentum[it])
    apply_schedules(state.optimizer, lr=lr, weight_decay=wd)

    with autocast:
        with torch.no_grad():
            teacher_out = state.teacher(views[:N_GLOBAL_VIEWS])  # the teacher sees global views
        student_out, tokens = state.student_ddp(views, with_features=True)
    loss = state.loss(student_out, teacher_out, state.epoch)
    stats = state.loss.last_stats
    logged = {"loss": float(loss.item()), "teacher_entropy": stats["teacher_entropy"]}
    logged["kl"] = stats["kl"]
    if config.koleo > 0:
        global_tokens = tokens[: N_GLOBAL_VIEWS * views[0].shape[0]]
        koleo = koleo_per_crop(global_tokens, N_GLOBAL_VIEWS)  # float32, outside autocast
        logged["koleo"] = float(koleo.item())
        loss = loss + config.koleo * koleo
    # Per-image means of equal shares: their mean over processes is the global batch's.
    # Every process then also sees the same non-finite loss and stops with the others.
    logged = _mean_over_processes(logged, loss.device)
    loss_value = logged["loss"] + config.koleo * logged.get("koleo", 0.0)
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(
            f"loss is {loss_value} at epoch {state.epoch + 1}, step {state.step_in_epoch + 1}: "
            "training stopped, the last checkpoint is kept; try a lower --lr, "
            "--precision fp32, or a smaller --clip-grad"
        )
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if config.clip_grad > 0:
        state.scaler.unscale_(state.optimizer)
        clip_gradients(state.student, config.clip_grad)
    if state.epoch_float < config.freeze_last_layer:
        cancel_last_layer_gradients(state.student.head)  # prototypes fixed for stability
    state.scaler.step(state.optimizer)
    state.scaler.update()
    update_teacher(state.student, state.teacher, momentum)  # EMA of the student

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


def _stop_reason(state: TrainState, ctrl_c: _CtrlC) -> str | None:
    """Why training stops before the end of its epochs: Ctrl-C, or ``max_steps`` reached."""
    if ctrl_c.requested:
        return INTERRUPTED
    max_steps = state.config.max_steps
    if max_steps is not None and state.global_step >= max_steps:
        return MAX_STEPS
    return None


def _freeze_backbone(state: TrainState, frozen: bool) -> None:
    """Freeze or unfreeze the student's backbone, when it is not so already."""
    last_block = state.student.backbone.vit.blocks[-1].parameters()
    if frozen == any(p.requires_grad for p in last_block):
        freeze_backbone(state.student, frozen, freeze_blocks=state.config.freeze_blocks)


def _save(state: TrainState, path: Path, process: ProcessInfo, clock: BudgetClock | None) -> None:
    """The main process writes the checkpoint; every process waits for it."""
    if clock is not None:
        state.spent_seconds = clock.spent()
    if process.is_main:
        save_checkpoint(path, state.state_dict())
    distributed.barrier()


def _mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each value averaged over the processes (unchanged without a process group)."""
    if not distributed.is_initialized():
        return values
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    means = distributed.all_reduce_mean(stacked).tolist()
    return dict(zip(values, means, strict=True))


class _CtrlC:
    """While entered, a first Ctrl-C asks the loop to checkpoint and stop after the current
    step; a second one aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _CtrlC:
        self._previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        except ValueError:  # not the main thread
            pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logger.warning("interrupt: saving a checkpoint after this step (Ctrl-C again to abort)")
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
