"""What a run reports while it trains: the progress bar, ``metrics.jsonl``, collapse warnings
and the kNN monitor.

The bar shows epoch, step, loss, lr, images/s and time left on a terminal (log lines
otherwise); ``metrics.jsonl`` (and TensorBoard with ``logger: tensorboard``) gets a record
every ``log_every`` steps and every kNN measurement. Only the main process writes files.

With the monitor, the teacher of the best measurement so far is kept as
``teacher_best.safetensors`` (the starting model counts: a run that never beats it keeps
it), and the run ends with one line, also in ``summary.json``: start -> best -> last.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from .._files import atomic_write
from .._progress import ProgressBar
from ..models import save_backbone
from ..runtime.distributed import ProcessInfo, barrier
from .config import ResolvedConfig
from .metrics import METRICS_FILE, KnnSummary, MetricsLog, knn_summary, read_metrics
from .monitor import CollapseWatch, KnnMonitor
from .state import TrainState

logger = logging.getLogger(__name__)

_SMOOTHING = 0.9  # exponential moving average of the images/s reading
_LOG_EVERY_S = 60.0  # without a bar, a status line this often
BEST_TEACHER = "teacher_best.safetensors"
"""The teacher of the run's best kNN measurement, in the run folder."""
SUMMARY_FILE = "summary.json"
"""The run's kNN verdict (start, best, last), in the run folder."""


class RunLog:
    """The run's outputs while it trains.

    Args:
        config: The run's config (``log_every``, ``logger``, ``progress``, the monitor's).
        out: The run folder.
        process: This process's place in the job.
        total_steps: Steps of the whole run.
        resume_step: The global step a resumed run restarts from (None for a new run):
            records past it were lost with the interrupted steps and are dropped.
    """

    def __init__(
        self,
        config: ResolvedConfig,
        out: Path,
        *,
        process: ProcessInfo,
        total_steps: int,
        resume_step: int | None,
    ) -> None:
        self.config = config
        self.out = out
        self.process = process
        self.resumed = resume_step is not None
        self.metrics: MetricsLog | None = None
        self.monitor: KnnMonitor | None = None
        self.collapse: CollapseWatch | None = None
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
        #: Best kNN top-1 so far; on resume, from the measurements the checkpoint kept.
        self.best_knn: float | None = None
        if self.metrics is not None and self.resumed:
            earlier = knn_summary(read_metrics(self.metrics.path))
            self.best_knn = earlier.best.knn_top1 if earlier is not None else None
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
        """Measure the teacher's kNN accuracy (with the monitor on); every process waits."""
        if self.monitor is not None and self.metrics is not None:
            teacher = state.teacher.backbone
            top1 = self.monitor.evaluate(teacher, device=self.process.device, autocast=autocast)
            k = self.config.knn_k
            record = {"kind": "knn", "step": state.global_step, "epoch": state.epoch}
            self.metrics.write(
                record | {"knn_top1": top1, "k": k, **(self.monitor.last_quality or {})}
            )
            logger.info("epoch %d: teacher kNN top-1 %.2f%% (k=%d)", state.epoch, 100 * top1, k)
            if self.best_knn is None or top1 > self.best_knn:
                self.best_knn = top1
                save_backbone(
                    teacher,
                    self.out / BEST_TEACHER,
                    branch="teacher",
                    provenance=state.provenance(self.out) | {"knn_top1": top1, "k": k},
                )
        barrier()

    def set_total_steps(self, total: int) -> None:
        """The run's length changed (a time budget refitted to its pace)."""
        self._bar.set_total(total)

    def close(self) -> None:
        """Remove the bar and close the files (closing twice is harmless)."""
        self._bar.close()
        if self.metrics is not None:
            self.metrics.close()


def report_knn(out: Path) -> KnnSummary | None:
    """Log the run's kNN verdict and write it to ``summary.json`` (None without a monitor).

    Read from the run's ``metrics.jsonl``, so measurements before a resume count. When the
    last measurement is below the start, a warning says training made the features worse.
    """
    metrics = out / METRICS_FILE
    summary = knn_summary(read_metrics(metrics)) if metrics.is_file() else None
    if summary is None:
        return None
    logger.info("%s", summary.line())
    if summary.worse_than_start:
        logger.warning(
            "training made the features worse on these labels: the last kNN top-1 "
            "(%.1f%%) is below the starting model's (%.1f%%); %s keeps the best teacher",
            100 * summary.last.knn_top1,
            100 * summary.start.knn_top1,
            out / BEST_TEACHER,
        )
    text = json.dumps({"knn": summary.to_dict()}, indent=2) + "\n"
    atomic_write(out / SUMMARY_FILE, lambda tmp: tmp.write_text(text))
    return summary
