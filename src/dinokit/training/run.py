"""``dinokit train``: a whole DINO run, read top to bottom (facebookresearch/dino ``train_dino``).

the run folder and the images -> every automatic value resolved, once -> student and
teacher -> optimizer -> loss -> schedules -> optional resume -> data -> the training loop
(:func:`~dinokit.training.loop.train_loop`) -> exports of the teacher and the student.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..data import Failed, list_images
from ..dino import MultiCropTransform, dino_schedules
from ..models import save_backbone
from ..models.weights.files import DINOKIT_METADATA_KEY
from ..runtime import distributed
from ..runtime.distributed import ProcessInfo, all_gather_objects
from ..runtime.precision import make_grad_scaler
from ..runtime.sync_batchnorm import convert_sync_batchnorm, has_batchnorms
from .budget import PROBE_SHARE, BudgetClock, parse_budget
from .build import build_loss, build_networks
from .checkpoint import LAST_CHECKPOINT, capture_rng_state, load_checkpoint, restore_rng_state
from .config import CONFIG_FILE, ResolvedConfig, TrainConfig, write_run_config
from .data import SeededViews, build_views_dataset, steps_per_epoch
from .loop import train_loop
from .metrics import METRICS_FILE, plot_curves
from .optim import build_adamw, param_groups
from .probe import measure_step_seconds
from .resolve import StepTime, log_sources, resolve_config
from .runlog import RunLog, report_knn
from .start import StartingPoint, load_start
from .state import TrainState
from .tensorboard import check_tensorboard

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_FILE", "build_state", "prepare_run_folder", "seed_everything", "train"]


def train(request: TrainConfig) -> Path:
    """Train (or fine-tune) a DINO student/teacher pair; returns the run folder.

    The folder receives ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt``,
    ``curves.png``, ``teacher.safetensors``, ``student.safetensors``, TensorBoard event files
    with ``logger="tensorboard"`` and, when images could not be read, ``skipped.txt``. With
    the kNN monitor (``eval_train``/``eval_val``) also ``teacher_best.safetensors`` (the
    teacher of the best measurement) and ``summary.json`` (start -> best -> last).

    Raises:
        KeyboardInterrupt: after Ctrl-C, once a checkpoint is saved.
        NonFiniteLossError: the loss diverged (the last good checkpoint is kept).
    """
    started = time.perf_counter()  # a time budget counts from here
    request.validate()
    if request.logger == "tensorboard":
        check_tensorboard()  # before any work, not after the first epoch
    process = distributed.init_distributed(request.device)
    try:
        return _train(request, process, started=started)
    finally:
        distributed.cleanup()


def _train(request: TrainConfig, process: ProcessInfo, *, started: float) -> Path:
    """The run of :func:`train` in one process, its process group set up."""
    out = Path(request.out)
    # ============ the run folder and the images ... ============
    resume_from = prepare_run_folder(out, resume=request.resume)
    distributed.barrier()  # every process checks the folder before rank 0 writes in it
    images = list_images(request.data)
    n_images = len(images.records)
    saved = load_checkpoint(resume_from) if resume_from is not None else None

    # ============ every automatic value resolved, once ... ============
    seed_everything(request.seed)
    start = load_start(request)
    recorded = saved[DINOKIT_METADATA_KEY] if saved is not None else None
    request = _same_budget(request, recorded)
    resolve = functools.partial(
        resolve_config,
        request,
        start,
        n_images=n_images,
        world_size=process.world_size,
        device=process.device,
        recorded=recorded,
    )
    config = resolve()
    budget = parse_budget(config.budget) if config.budget is not None else None
    dataset = _views(config, start, images.records)
    if budget is not None and budget.seconds is not None and request.steps is None:
        # A time budget: measure this machine's steps on a throw-away state, then build the
        # real one from the same random state (the same initial weights as without a probe).
        rng = capture_rng_state()
        probe = build_state(
            config, start, device=process.device, world_size=process.world_size, n_images=n_images
        )
        timing = measure_step_seconds(
            probe, dataset, process=process, max_seconds=PROBE_SHARE * budget.seconds
        )
        del probe
        spent = time.perf_counter() - started
        config = resolve(step_time=StepTime(timing.seconds, timed=timing.steps, spent=spent))
        restore_rng_state(rng)
    log_sources(config)
    logger.info(
        "%d images, %s on %s (%s), %d process(es)",
        n_images,
        config.model,
        process.device,
        config.precision,
        process.world_size,
    )

    # ============ networks, optimizer, loss, schedules; optionally resume ... ============
    state = build_state(
        config, start, device=process.device, world_size=process.world_size, n_images=n_images
    )
    if saved is not None:
        state.load_state_dict(saved)
        logger.info(
            "resumed from %s at epoch %d, step %d",
            resume_from,
            state.epoch + 1,
            state.step_in_epoch,
        )
    if process.is_main:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_run_config(out, config)
    distributed.barrier()

    # ============ training ... ============
    log = RunLog(
        config,
        out,
        process=process,
        total_steps=config.steps,
        resume_step=state.global_step if saved is not None else None,
        images=images.records,
    )
    clock = None
    if budget is not None and budget.seconds is not None:
        clock = BudgetClock(
            budget.seconds,
            steps_per_epoch=state.schedules.steps_per_epoch,
            spent=state.spent_seconds,
            started=started,
        )
    try:
        failed = train_loop(state, dataset, process=process, log=log, out=out, clock=clock)
    finally:
        log.close()  # also after Ctrl-C or a diverged loss

    # ============ exporting the teacher and the student ... ============
    skipped = [(s.path, s.reason) for s in images.skipped]
    _finish(state, out, process, failed=failed, skipped=skipped)
    if clock is not None and process.is_main:
        used = clock.spent()
        logger.info(
            "budget %s: %d steps, %dm%02ds used",
            config.budget,
            state.global_step,
            used // 60,
            used % 60,
        )
    return out


def _same_budget(request: TrainConfig, recorded: dict[str, Any] | None) -> TrainConfig:
    """A resumed run with the budget it started with goes on to the steps that budget
    became (its schedules span them); a new budget is fitted again."""
    before = (recorded or {}).get("train_config", {})
    same = request.budget is not None and before.get("budget") == request.budget
    if same and request.steps is None and before.get("steps"):
        return dataclasses.replace(request, steps=int(before["steps"]))
    return request


def _views(config: ResolvedConfig, start: StartingPoint, records: list[Any]) -> SeededViews:
    """The training dataset: the multi-crop views of ``records``, normalised as the backbone
    expects."""
    preprocessing = start.backbone.preprocessing
    transform = MultiCropTransform(
        global_size=config.global_size,
        local_size=config.local_size,
        n_local_crops=config.local_crops,
        global_scale=config.global_scale,
        local_scale=config.local_scale,
        mean=preprocessing.mean,
        std=preprocessing.std,
    )
    return build_views_dataset(records, transform, seed=config.seed)


def build_state(
    config: ResolvedConfig,
    start: StartingPoint,
    *,
    device: torch.device,
    world_size: int,
    n_images: int,
) -> TrainState:
    """A run's networks, optimizer, loss and schedules at step 0, on ``device``.

    Args:
        config: The resolved config.
        start: The architecture and weights to start from.
        device: This process's device.
        world_size: Processes (the lr and the steps per epoch follow the total batch).
        n_images: Training images.
    """
    # ============ building student and teacher networks ... ============
    student, teacher = build_networks(config, start)
    student, teacher = student.to(device), teacher.to(device)
    if distributed.is_initialized() and has_batchnorms(student):
        # As the reference: BatchNorm statistics of the global batch in both networks. The
        # teacher needs no DDP wrapper for it (the reference's wrapper only served
        # nn.SyncBatchNorm's old requirement), so it stays the bare module the EMA updates.
        n_layers = convert_sync_batchnorm(student) + convert_sync_batchnorm(teacher)
        logger.info("%d BatchNorm layers synchronised across processes", n_layers)

    # ============ preparing optimizer ... ============
    # The groups hold every parameter the run will train: the head warm-up only toggles
    # requires_grad, and DDP (below) must see them all trainable when it is built.
    layer_decay = None if config.layer_decay == 1.0 else config.layer_decay
    groups = param_groups(student, layer_decay=layer_decay, freeze_blocks=config.freeze_blocks)
    optimizer = build_adamw(groups, device=device)
    student_ddp: torch.nn.Module = student
    if world_size > 1 or distributed.is_initialized():
        student_ddp = DistributedDataParallel(
            student,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(config.head_warmup_epochs),
        )

    # ============ preparing loss ... ============
    loss = build_loss(config, start).to(device)

    # ============ init schedulers ... ============
    n_steps = steps_per_epoch(n_images, config.batch_size, world_size)
    schedules = dino_schedules(
        n_epochs=config.epochs,
        total_steps=config.steps,
        steps_per_epoch=n_steps,
        batch_size=config.batch_size * world_size,  # linear scaling rule on the total batch
        base_lr=config.lr,
        min_lr=config.min_lr,
        warmup_epochs=config.warmup_epochs,
        weight_decay=config.weight_decay,
        weight_decay_end=config.weight_decay_end,
        momentum=config.momentum,
    )
    return TrainState(
        config=config,
        student=student,
        student_ddp=student_ddp,
        teacher=teacher,
        loss=loss,
        optimizer=optimizer,
        scaler=make_grad_scaler(config.precision, device),
        schedules=schedules,
        base_weights=start.base_weights,
        world_size=world_size,
    )


def prepare_run_folder(out: Path, *, resume: bool) -> Path | None:
    """Check the run folder; returns the checkpoint to resume from, if any.

    Raises:
        FileExistsError: the folder holds a run and ``resume`` is off.
        FileNotFoundError: ``resume`` is on and there is no checkpoint.
    """
    checkpoint = out / LAST_CHECKPOINT
    if resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{out}: nothing to resume (no {LAST_CHECKPOINT})")
        return checkpoint
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} already holds a run: continue it with --resume, or choose another --out"
        )
    return None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA), as the reference's ``fix_random_seeds``.

    Called before the networks are built, so the same seed gives the same initial weights
    (and, under DDP, the same teacher on every process: only the student is synchronised).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _finish(
    state: TrainState,
    out: Path,
    process: ProcessInfo,
    *,
    failed: list[Failed],
    skipped: list[tuple[str, str]],
) -> None:
    """``skipped.txt``, the teacher and student exports, ``curves.png`` and the kNN verdict
    (main process)."""
    failed_all = all_gather_objects([(f.path, f.reason) for f in failed])
    if not process.is_main:
        return
    unreadable = sorted(set(skipped) | {item for part in failed_all for item in part})
    if unreadable:
        (out / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in unreadable))
        logger.warning(
            "%d images could not be read: listed in %s", len(unreadable), out / "skipped.txt"
        )
    provenance = state.provenance(out)
    for branch, network in (("teacher", state.teacher), ("student", state.student)):
        save_backbone(
            network.backbone, out / f"{branch}.safetensors", branch=branch, provenance=provenance
        )
    plot_curves(out / METRICS_FILE, out / "curves.png")
    report_knn(out)
    logger.info("run saved in %s (teacher.safetensors, student.safetensors)", out)
