"""``dinokit train``: a whole DINO run, read top to bottom like a table of contents.

prepare the folder -> list images -> build networks -> optimizer, loss, schedules ->
resume -> for each epoch: train, checkpoint, monitor -> export teacher and student.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..config_io import to_yaml_dict, write_yaml
from ..data import Failed, list_images
from ..dino import DINOLoss, MultiCropTransform, cosine_schedule, scaled_lr
from ..models import save_backbone
from ..models.weights.files import DINOKIT_METADATA_KEY
from ..runtime import distributed
from ..runtime.distributed import ProcessInfo, all_gather_objects
from ..runtime.precision import autocast_context, make_grad_scaler, resolve_precision
from ..runtime.sync_batchnorm import convert_sync_batchnorm, has_batchnorms
from .build import build_networks
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, steps_per_epoch
from .data import EpochBatchSampler, build_views_dataset, epoch_loader
from .loop import train_one_epoch
from .metrics import MetricsLog, plot_curves
from .monitor import CollapseWatch, KnnMonitor
from .optim import build_adamw, freeze_backbone, param_groups
from .progress import Progress
from .state import Schedules, TrainState
from .tensorboard import check_tensorboard

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LAST_CHECKPOINT = "checkpoints/last.pt"


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


def build_schedules(config: TrainConfig, n_steps: int, world_size: int) -> Schedules:
    """Per-step lr (linear scaling + warm-up + cosine), weight decay and momentum."""
    total = config.epochs * n_steps
    assert config.lr is not None and config.warmup_epochs is not None
    assert config.momentum is not None  # resolved
    assert config.weight_decay is not None and config.weight_decay_end is not None
    return Schedules(
        lr=cosine_schedule(
            scaled_lr(config.lr, config.batch_size * world_size),
            config.min_lr,
            total_steps=total,
            warmup_steps=round(config.warmup_epochs * n_steps),
        ),
        weight_decay=cosine_schedule(
            config.weight_decay, config.weight_decay_end, total_steps=total
        ),
        momentum=cosine_schedule(config.momentum, 1.0, total_steps=total),
        steps_per_epoch=n_steps,
    )


@contextmanager
def _stop_on_interrupt() -> Iterator[dict[str, bool]]:
    """A first Ctrl-C asks the loop to checkpoint and stop after the current step."""
    flag = {"requested": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        logger.warning("interrupt: saving a checkpoint after this step (Ctrl-C again to abort)")
        flag["requested"] = True
        signal.signal(signal.SIGINT, previous)

    installed = True
    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        installed = False
    try:
        yield flag
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)


def train(config: TrainConfig) -> Path:
    """Train (or fine-tune) a DINO student/teacher pair; returns the run folder.

    The folder receives ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt``,
    ``curves.png``, ``teacher.safetensors``, ``student.safetensors``, TensorBoard event files
    with ``logger="tensorboard"`` and, when images could not be read, ``skipped.txt``.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once a checkpoint is saved.
        NonFiniteLossError: the loss diverged (the last good checkpoint is kept).
    """
    config.validate()
    if config.logger == "tensorboard":
        check_tensorboard()  # before any work, not after the first epoch
    process = distributed.init_distributed(config.device)
    device = process.device
    out = Path(config.out)
    try:
        resume_from = prepare_run_folder(out, resume=config.resume)
        distributed.barrier()  # every process checks the folder before rank 0 writes in it
        images = list_images(config.data)
        seed_everything(config.seed)
        nets = build_networks(config, n_images=len(images.records), world_size=process.world_size)
        config = nets.config
        _log_sources(config, nets.sources)
        precision = resolve_precision(config.precision, device)
        logger.info(
            "%d images, %s on %s (%s), %d process(es)",
            len(images.records),
            config.model,
            device,
            precision,
            process.world_size,
        )

        state = _build_state(
            config, nets, device, process.world_size, len(images.records), precision
        )
        if resume_from is not None:
            saved = load_checkpoint(resume_from)
            state.load_state_dict(saved)
            state.sources = _resumed_sources(config, nets.sources, saved)
            logger.info(
                "resumed from %s at epoch %d, step %d",
                resume_from,
                state.epoch + 1,
                state.step_in_epoch,
            )
        if process.is_main:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_yaml(
                out / CONFIG_FILE,
                to_yaml_dict(dataclasses.replace(config, resume=False)),
                comments=state.sources,
            )
        distributed.barrier()
        _run_epochs(
            state,
            config,
            images.records,
            device,
            precision,
            process,
            out,
            skipped=[(s.path, s.reason) for s in images.skipped],
            resumed=resume_from is not None,
        )
    finally:
        distributed.cleanup()
    return out


def _build_state(
    config: TrainConfig,
    nets: Any,
    device: torch.device,
    world_size: int,
    n_images: int,
    precision: str,
) -> TrainState:
    student, teacher = nets.student.to(device), nets.teacher.to(device)
    assert config.layer_decay is not None and config.out_dim is not None  # resolved
    assert config.local_crops is not None and config.teacher_temp is not None
    assert config.warmup_teacher_temp is not None
    assert config.warmup_teacher_temp_epochs is not None
    if distributed.is_initialized() and has_batchnorms(student):
        # As the reference: BatchNorm statistics of the global batch in both networks. The
        # teacher needs no DDP wrapper for it (the reference's wrapper only served
        # nn.SyncBatchNorm's old requirement), so it stays the bare module the EMA updates.
        n_layers = convert_sync_batchnorm(student) + convert_sync_batchnorm(teacher)
        logger.info("%d BatchNorm layers synchronised across processes", n_layers)
    groups = param_groups(
        student,
        layer_decay=None if config.layer_decay == 1.0 else config.layer_decay,
        freeze_blocks=config.freeze_blocks,
    )
    optimizer = build_adamw(groups, device=device)
    student_ddp: torch.nn.Module = student
    if world_size > 1 or distributed.is_initialized():
        student_ddp = DistributedDataParallel(
            student,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(config.head_warmup_epochs),
        )
    loss = DINOLoss(
        config.out_dim,
        n_crops=2 + config.local_crops,
        warmup_teacher_temp=config.warmup_teacher_temp,
        teacher_temp=config.teacher_temp,
        warmup_teacher_temp_epochs=config.warmup_teacher_temp_epochs,
        n_epochs=config.epochs,
        student_temp=config.student_temp,
        center_momentum=config.center_momentum,
        centering=config.centering,
    ).to(device)
    if nets.center is not None and nets.center.shape == loss.center.shape:
        loss.center.copy_(nets.center)
        logger.info("loaded the loss centre from the weights file")
    n_steps = steps_per_epoch(n_images, config.batch_size, world_size)
    return TrainState(
        config=config,
        student=student,
        student_ddp=student_ddp,
        teacher=teacher,
        loss=loss,
        optimizer=optimizer,
        scaler=make_grad_scaler(precision, device),
        schedules=build_schedules(config, n_steps, world_size),
        base_weights=nets.base_weights,
        sources=dict(nets.sources),
    )


def _run_epochs(
    state: TrainState,
    config: TrainConfig,
    records: Any,
    device: torch.device,
    precision: str,
    process: ProcessInfo,
    out: Path,
    *,
    skipped: list[tuple[str, str]],
    resumed: bool,
) -> None:
    assert config.global_size is not None and config.local_size is not None  # resolved
    assert config.local_crops is not None
    assert config.global_scale is not None and config.local_scale is not None
    autocast = autocast_context(precision, device)
    transform = MultiCropTransform(
        global_size=config.global_size,
        local_size=config.local_size,
        n_local_crops=config.local_crops,
        global_scale=config.global_scale,
        local_scale=config.local_scale,
        mean=state.student.backbone.config.preprocessing.mean,
        std=state.student.backbone.config.preprocessing.std,
    )
    dataset = build_views_dataset(records, transform, seed=config.seed)
    metrics = (
        MetricsLog(
            out / "metrics.jsonl",
            resume_step=state.global_step if resumed else None,
            tensorboard=config.logger == "tensorboard",
        )
        if process.is_main
        else None
    )
    monitor = (
        KnnMonitor(config.eval_train, config.eval_val, k=config.knn_k, workers=config.workers)
        if config.eval_train and config.eval_val and process.is_main
        else None
    )
    max_steps = config.max_steps
    total_steps = config.epochs * state.schedules.steps_per_epoch
    progress = Progress(total_steps, state.global_step, enabled=config.progress and process.is_main)

    def checkpoint() -> None:
        if process.is_main:
            save_checkpoint(out / LAST_CHECKPOINT, state.state_dict())
        distributed.barrier()

    def evaluate_knn() -> None:
        if monitor is not None and metrics is not None:
            top1 = monitor.evaluate(state.teacher.backbone, device=device, autocast=autocast)
            metrics.write(
                {
                    "kind": "knn",
                    "step": state.global_step,
                    "epoch": state.epoch,
                    "knn_top1": top1,
                    "k": config.knn_k,
                    **(monitor.last_quality or {}),
                }
            )
            logger.info(
                "epoch %d: teacher kNN top-1 %.2f%% (k=%d)", state.epoch, 100 * top1, config.knn_k
            )
        distributed.barrier()

    if not resumed:
        evaluate_knn()  # the "before" number
    head_warmup = config.head_warmup_epochs or 0.0
    collapse = CollapseWatch(state.loss.out_dim)
    failed: list[Failed] = []
    try:
        with _stop_on_interrupt() as interrupt:

            def on_step(stats: dict[str, float], n_images: int) -> None:
                progress.update(stats, n_images * process.world_size, epoch=state.epoch)
                if process.is_main:
                    collapse.update(stats, state.global_step)
                if metrics is not None and state.global_step % config.log_every == 0:
                    metrics.write(
                        {
                            "kind": "step",
                            "step": state.global_step,
                            "epoch": round(state.epoch_float, 4),
                            **stats,
                            "images_per_s": progress.images_per_second,
                        }
                    )
                if head_warmup and state.epoch_float >= head_warmup and _frozen(state):
                    freeze_backbone(state.student, False, freeze_blocks=config.freeze_blocks)
                if config.save_every and state.global_step % config.save_every == 0:
                    checkpoint()

            def should_stop() -> bool:
                return interrupt["requested"] or (
                    max_steps is not None and state.global_step >= max_steps
                )

            def stop_if_interrupted() -> None:
                if interrupt["requested"]:
                    progress.close()
                    raise KeyboardInterrupt(
                        f"checkpoint saved to {out / LAST_CHECKPOINT}; continue with --resume"
                    )

            while state.epoch < config.epochs:
                if max_steps is not None and state.global_step >= max_steps:
                    break  # a resumed run that already reached max_steps trains nothing more
                if state.epoch_float < head_warmup and not _frozen(state):
                    freeze_backbone(state.student, True, freeze_blocks=config.freeze_blocks)
                sampler = EpochBatchSampler(
                    len(records),
                    config.batch_size,
                    seed=config.seed,
                    epoch=state.epoch,
                    rank=process.rank,
                    world_size=process.world_size,
                    start_batch=state.step_in_epoch,
                )
                loader = epoch_loader(
                    dataset, sampler, workers=config.workers, pin_memory=device.type == "cuda"
                )
                outcome = train_one_epoch(
                    state,
                    loader,
                    device=device,
                    autocast=autocast,
                    on_step=on_step,
                    should_stop=should_stop,
                )
                failed.extend(outcome.failed)
                if outcome.stopped and state.step_in_epoch < state.schedules.steps_per_epoch:
                    checkpoint()
                    stop_if_interrupted()
                    break
                state.epoch += 1
                state.step_in_epoch = 0
                checkpoint()
                if process.is_main and config.keep_every and state.epoch % config.keep_every == 0:
                    save_checkpoint(
                        out / f"checkpoints/epoch_{state.epoch:04d}.pt", state.state_dict()
                    )
                stop_if_interrupted()  # Ctrl-C on an epoch's last step: stop, don't export
                if state.epoch % config.eval_every == 0 or state.epoch == config.epochs:
                    evaluate_knn()
                if outcome.stopped:
                    break
    except BaseException:  # Ctrl-C, a diverged loss: the logs still close
        progress.close()
        if metrics is not None:
            metrics.close()
        raise
    progress.close()
    _finish(state, config, out, process, failed, skipped, metrics)


def _log_sources(config: TrainConfig, sources: dict[str, str]) -> None:
    """One line per value taken from the weights' recorded recipe or a rule, the rest
    (plain defaults) in one debug line."""
    plain = []
    for name, source in sources.items():
        value = getattr(config, name)
        if source.startswith(("checkpoint args", "the loaded head")) or name == "momentum":
            logger.info("%s=%s (from %s)", name, _show(value), source)
        else:
            plain.append(f"{name}={_show(value)} ({source})")
    logger.debug("automatic values: %s", ", ".join(plain))


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return str(value)


def _resumed_sources(
    config: TrainConfig, sources: dict[str, str], saved: dict[str, Any]
) -> dict[str, str]:
    """Sources of a resumed run: the first run's, for values that did not change since (a
    resumed command-line run reads them back from config.yaml, as if set by the user)."""
    meta = saved.get(DINOKIT_METADATA_KEY, {})
    before, saved_sources = meta.get("train_config", {}), meta.get("config_sources", {})
    kept = {
        name: source
        for name, source in saved_sources.items()
        if name in before and _plain(getattr(config, name, None)) == before[name]
    }
    return kept | sources


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _frozen(state: TrainState) -> bool:
    return not any(p.requires_grad for p in state.student.backbone.vit.blocks[-1].parameters())


def _finish(
    state: TrainState,
    config: TrainConfig,
    out: Path,
    process: ProcessInfo,
    failed: list[Failed],
    skipped: list[tuple[str, str]],
    metrics: MetricsLog | None,
) -> None:
    failed_all = all_gather_objects([(f.path, f.reason) for f in failed])
    if not process.is_main:
        return
    unreadable = sorted(set(skipped) | {item for part in failed_all for item in part})
    if unreadable:
        (out / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in unreadable))
        logger.warning(
            "%d images could not be read: listed in %s", len(unreadable), out / "skipped.txt"
        )
    provenance = {
        "run": str(out.resolve()),
        "base_weights": state.base_weights,
        "epochs": round(state.epoch_float, 3),
        "steps": state.global_step,
        "model": config.model,
    }
    for branch, network in (("teacher", state.teacher), ("student", state.student)):
        save_backbone(
            network.backbone, out / f"{branch}.safetensors", branch=branch, provenance=provenance
        )
    if metrics is not None:
        metrics.close()
        plot_curves(out / "metrics.jsonl", out / "curves.png")
    logger.info("run saved in %s (teacher.safetensors, student.safetensors)", out)
