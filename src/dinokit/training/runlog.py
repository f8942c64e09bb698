"""What a run reports while it trains: the progress bar, ``metrics.jsonl``, collapse warnings
and the kNN monitor.

The bar shows epoch, step, loss, lr, images/s and time left on a terminal (log lines
otherwise); ``metrics.jsonl`` (and TensorBoard with ``logger: tensorboard``) gets a record
every ``log_every`` steps and every kNN measurement. Only the main process writes files.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from .._progress import ProgressBar
from ..runtime.distributed import ProcessInfo, barrier
from .config import ResolvedConfig
from .metrics import MetricsLog
from .monitor import CollapseWatch, KnnMonitor
from .state import TrainState

logger = logging.getLogger(__name__)

_SMOOTHING = 0.9  # exponential moving average of the images/s reading
_LOG_EVERY_S = 60.0  # without a bar, a status line this often


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
        self.process = process
        self.resumed = resume_step is not None
        self.metrics: MetricsLog | None = None
        self.monitor: KnnMonitor | None = None
        self.collapse: CollapseWatch | None = None
        if process.is_main:
            self.metrics = MetricsLog(
                out / "metrics.jsonl",
                resume_step=resume_step,
                tensorboard=config.logger == "tensorboard",
            )
            self.collapse = CollapseWatch(config.out_dim)
            if config.eval_train and config.eval_val:
                self.monitor = KnnMonitor(
                    config.eval_train, config.eval_val, k=config.knn_k, workers=config.workers
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
        barrier()

    def close(self) -> None:
        """Remove the bar and close the files (closing twice is harmless)."""
        self._bar.close()
        if self.metrics is not None:
            self.metrics.close()
