"""What a run reports while it trains: the progress bar, ``metrics.jsonl``, collapse warnings,
the kNN monitor and, without labels, the label-free check.

The bar shows epoch, step, loss, lr, images/s and time left on a terminal (log lines
otherwise); ``metrics.jsonl`` (and TensorBoard with ``logger: tensorboard``) gets a record
every ``log_every`` steps and every measurement. Only the main process writes files.

With the monitor, the teacher of the best measurement so far is kept as
``teacher_best.safetensors`` (the starting model counts: a run that never beats it keeps
it); a new run also measures the baselines once (raw pixels, and the random initialisation
when fine-tuning), and the run ends with one line, also in ``summary.json``: start -> best
-> last; baselines. Without it, the teacher's label-free scores on a sample of the training
images are measured at the same points, a warning is the alarm when they collapse, and the
run ends with a label-free line. The extra work runs at the start and at epoch ends only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._files import atomic_write
from .._progress import ProgressBar
from ..data import ImageRecord, list_images
from ..models import RANDOM_INIT, save_backbone
from ..runtime.distributed import ProcessInfo, barrier
from .config import ResolvedConfig
from .metrics import (
    METRICS_FILE,
    RAW_PIXELS,
    KnnSummary,
    LabelFreePoint,
    MetricsLog,
    knn_summary,
    label_free_point,
    label_free_summary,
    read_metrics,
)
from .monitor import CollapseWatch, KnnMonitor, LabelFreeCheck, label_free_alarm
from .state import TrainState

logger = logging.getLogger(__name__)

_SMOOTHING = 0.9  # exponential moving average of the images/s reading
_LOG_EVERY_S = 60.0  # without a bar, a status line this often
BEST_TEACHER = "teacher_best.safetensors"
"""The teacher of the run's best kNN measurement, in the run folder."""
SUMMARY_FILE = "summary.json"
"""The run's verdict (kNN start, best, last and baselines; or the label-free check), in the
run folder."""
FROM_SCRATCH = RANDOM_INIT
"""``TrainState.base_weights`` of a run that starts from random weights."""


class RunLog:
    """The run's outputs while it trains.

    Args:
        config: The run's config (``log_every``, ``logger``, ``progress``, the monitor's).
        out: The run folder.
        process: This process's place in the job.
        total_steps: Steps of the whole run.
        resume_step: The global step a resumed run restarts from (None for a new run):
            records past it were lost with the interrupted steps and are dropped.
        images: The training images, sampled by the label-free check of a run without the
            monitor (default: listed again from ``config.data``).
    """

    def __init__(
        self,
        config: ResolvedConfig,
        out: Path,
        *,
        process: ProcessInfo,
        total_steps: int,
        resume_step: int | None,
        images: Sequence[ImageRecord] | None = None,
    ) -> None:
        self.config = config
        self.out = out
        self.process = process
        self.resumed = resume_step is not None
        self.metrics: MetricsLog | None = None
        self.monitor: KnnMonitor | None = None
        self.collapse: CollapseWatch | None = None
        self.label_free: LabelFreeCheck | None = None
        if process.is_main:
            self.metrics = MetricsLog(
                out / METRICS_FILE,
                resume_step=resume_step,
                tensorboard=config.logger == "tensorboard",
            )
            self.collapse = CollapseWatch(config.out_dim)
            if config.eval_train and config.eval_val:
                self.monitor = KnnMonitor(
                    config.eval_train, config.eval_val, k=config.knn_k, workers=config.workers
                )
            else:
                records = images if images is not None else list_images(config.data).records
                self.label_free = LabelFreeCheck(records, seed=config.seed, workers=config.workers)
        #: The label-free start; on resume, read back from the run's records.
        self.label_free_start: LabelFreePoint | None = None
        #: Best kNN top-1 so far; on resume, from the measurements the checkpoint kept.
        self.best_knn: float | None = None
        if self.metrics is not None and self.resumed:
            recorded = read_metrics(self.metrics.path)
            earlier = knn_summary(recorded)
            self.best_knn = earlier.best.knn_top1 if earlier is not None else None
            start = next((r for r in recorded if r.get("kind") == "label_free"), None)
            self.label_free_start = label_free_point(start) if start is not None else None
            if self.best_knn is not None and not (out / BEST_TEACHER).is_file():
                logger.warning(
                    "%s: no %s for the earlier best kNN top-1 (%.1f%%); it is written when a "
                    "measurement beats it",
                    out,
                    BEST_TEACHER,
                    100 * self.best_knn,
                )
        self.images_per_second = 0.0
        self._last = time.perf_counter()
        self._bar = ProgressBar(
            total_steps,
            desc="epoch 1",
            unit="step",
            done=resume_step or 0,
            bar=None if config.progress and process.is_main else False,
            log_every_s=_LOG_EVERY_S,
            logger=logger,
        )

    def step(self, state: TrainState, stats: dict[str, float], n_images: int) -> None:
        """Report one step of ``n_images`` images per process."""
        now = time.perf_counter()
        rate = n_images * self.process.world_size / max(now - self._last, 1e-9)
        self._last = now
        self.images_per_second = (
            rate
            if not self.images_per_second
            else _SMOOTHING * self.images_per_second + (1 - _SMOOTHING) * rate
        )
        postfix = {"loss": f"{stats['loss']:.4f}", "lr": f"{stats['lr']:.2e}"}
        postfix["img/s"] = f"{self.images_per_second:.1f}"
        self._bar.update(1, desc=f"epoch {state.epoch + 1}", postfix=postfix)
        if self.collapse is not None:
            self.collapse.update(stats, state.global_step)
        if self.metrics is not None and state.global_step % self.config.log_every == 0:
            epoch = round(state.epoch_float, 4)
            record = {"kind": "step", "step": state.global_step, "epoch": epoch, **stats}
            self.metrics.write(record | {"images_per_s": self.images_per_second})

    def knn(self, state: TrainState, autocast: contextlib.AbstractContextManager[Any]) -> None:
        """Measure the teacher: kNN accuracy with the monitor on (and, the first time in a new
        run, the baselines), else the label-free scores; every process waits."""
        if self.metrics is not None:
            if self.monitor is not None:
                first = not self.resumed and self.best_knn is None
                self._knn(self.monitor, self.metrics, state, autocast)
                if first:
                    self._baselines(self.monitor, self.metrics, state, autocast)
            elif self.label_free is not None:
                self._label_free(self.label_free, self.metrics, state, autocast)
        barrier()

    def set_total_steps(self, total: int) -> None:
        """The run's length changed (a time budget refitted to its pace)."""
        self._bar.set_total(total)

    def _knn(
        self,
        monitor: KnnMonitor,
        metrics: MetricsLog,
        state: TrainState,
        autocast: contextlib.AbstractContextManager[Any],
    ) -> None:
        """The teacher's kNN record; its weights kept when it is the best so far."""
        teacher = state.teacher.backbone
        top1 = monitor.evaluate(teacher, device=self.process.device, autocast=autocast)
        k = self.config.knn_k
        epoch = _epoch(state)
        record = {"kind": "knn", "step": state.global_step, "epoch": epoch}
        metrics.write(record | {"knn_top1": top1, "k": k, **(monitor.last_quality or {})})
        logger.info("epoch %s: teacher kNN top-1 %.2f%% (k=%d)", epoch, 100 * top1, k)
        if self.best_knn is None or top1 > self.best_knn:
            self.best_knn = top1
            save_backbone(
                teacher,
                self.out / BEST_TEACHER,
                branch="teacher",
                provenance=state.provenance(self.out) | {"knn_top1": top1, "k": k},
            )

    def _baselines(
        self,
        monitor: KnnMonitor,
        metrics: MetricsLog,
        state: TrainState,
        autocast: contextlib.AbstractContextManager[Any],
    ) -> None:
        """The raw-pixel and random-init kNN records, once at the start of a new run.

        From scratch the start measured just before is the random init: it is recorded as
        such rather than measured twice.
        """
        k, began = self.config.knn_k, time.perf_counter()
        scores = {RAW_PIXELS: (monitor.raw_pixel_baseline(), False)}
        if state.base_weights == FROM_SCRATCH:
            assert self.best_knn is not None  # the start was measured just before
            scores[RANDOM_INIT] = (self.best_knn, True)
        else:
            top1 = monitor.random_init_baseline(
                state.teacher.backbone.config,
                seed=self.config.seed,
                device=self.process.device,
                autocast=autocast,
            )
            scores[RANDOM_INIT] = (top1, False)
        for name, (top1, is_start) in scores.items():
            record = {"kind": "baseline", "step": 0, "name": name, "knn_top1": top1, "k": k}
            metrics.write(record | ({"is_start": True} if is_start else {}))
        logger.info(
            "baselines, kNN top-1 (k=%d): %s (%.1f s)",
            k,
            ", ".join(
                f"{name} {100 * top1:.1f}%" + (" (the start)" if is_start else "")
                for name, (top1, is_start) in scores.items()
            ),
            time.perf_counter() - began,
        )

    def _label_free(
        self,
        check: LabelFreeCheck,
        metrics: MetricsLog,
        state: TrainState,
        autocast: contextlib.AbstractContextManager[Any],
    ) -> None:
        """The teacher's label-free record; a warning when it looks collapsed."""
        began = time.perf_counter()
        score = check.measure(state.teacher.backbone, device=self.process.device, autocast=autocast)
        if score is None:
            logger.warning("label-free check skipped: fewer than 2 training images embedded")
            return
        point = LabelFreePoint(
            score.effective_rank, score.uniformity, _epoch(state), state.global_step
        )
        if self.label_free_start is None:
            self.label_free_start = point
        alarm = label_free_alarm(self.label_free_start, point)
        metrics.write({"kind": "label_free", **asdict(point), "alarm": alarm})
        logger.info(
            "epoch %s: teacher effective rank %.2f, uniformity %.3f (label-free, %d images, "
            "%.1f s)",
            point.epoch,
            point.effective_rank,
            point.uniformity,
            len(check.records),
            time.perf_counter() - began,
        )
        if alarm is not None:
            logger.warning(
                "the teacher's features are collapsing at epoch %s: %s; lower --lr, or keep "
                "--momentum closer to 1 and the teacher temperature lower",
                point.epoch,
                alarm,
            )

    def close(self) -> None:
        """Remove the bar and close the files (closing twice is harmless)."""
        self._bar.close()
        if self.metrics is not None:
            self.metrics.close()


def _epoch(state: TrainState) -> int | float:
    """Completed epochs, or the fractional epoch of a run that ends inside one (a budget)."""
    return state.epoch if state.step_in_epoch == 0 else round(state.epoch_float, 2)


def report_knn(out: Path) -> KnnSummary | None:
    """Log the run's verdict and write it to ``summary.json``; returns the kNN part (None
    without a monitor).

    Read from the run's ``metrics.jsonl``, so measurements before a resume count. With the
    monitor: start -> best -> last and the baselines, a warning when the last measurement is
    below the start, and a sentence when it is below raw pixels. Without it: the label-free
    check's start -> last and whether it saw a collapse.
    """
    metrics = out / METRICS_FILE
    records = read_metrics(metrics) if metrics.is_file() else []
    summary, label_free = knn_summary(records), label_free_summary(records)
    verdict: dict[str, Any] = {}
    if summary is not None:
        logger.info("%s", summary.line())
        below = summary.below_raw_pixels()
        if below is not None:
            logger.info("%s", below)
        if summary.worse_than_start:
            logger.warning(
                "training made the features worse on these labels: the last kNN top-1 "
                "(%.1f%%) is below the starting model's (%.1f%%); %s keeps the best teacher",
                100 * summary.last.knn_top1,
                100 * summary.start.knn_top1,
                out / BEST_TEACHER,
            )
        verdict["knn"] = summary.to_dict()
    if label_free is not None:
        (logger.warning if label_free.collapsed else logger.info)("%s", label_free.line())
        verdict["label_free"] = label_free.to_dict()
    if verdict:
        text = json.dumps(verdict, indent=2) + "\n"
        atomic_write(out / SUMMARY_FILE, lambda tmp: tmp.write_text(text))
    return summary
