"""The training progress bar: epoch, step, loss, lr, images/s and time left."""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

_SMOOTHING = 0.9  # exponential moving average of the images/s reading


class Progress:
    """A tqdm bar over all steps of the run, or periodic log lines when disabled.

    Args:
        total_steps: Steps of the whole run.
        done_steps: Steps already done (resume).
        enabled: Draw the bar (main process, interactive use).
        log_every_s: Without a bar, log a status line this often.
    """

    def __init__(
        self, total_steps: int, done_steps: int, *, enabled: bool, log_every_s: float = 60.0
    ) -> None:
        self.total = total_steps
        self.done = done_steps
        self.images_per_second = 0.0
        self._last = time.perf_counter()
        self._last_log = self._last
        self._log_every_s = log_every_s
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps,
                initial=done_steps,
                unit="step",
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self, stats: dict[str, float], n_images: int, *, epoch: int) -> None:
        """Record one step of ``n_images`` images (all processes)."""
        now = time.perf_counter()
        rate = n_images / max(now - self._last, 1e-9)
        self._last = now
        self.images_per_second = (
            rate
            if self.done == 0 or not self.images_per_second
            else _SMOOTHING * self.images_per_second + (1 - _SMOOTHING) * rate
        )
        self.done += 1
        if self._bar is not None:
            self._bar.set_description(f"epoch {epoch + 1}", refresh=False)
            self._bar.set_postfix(
                loss=f"{stats['loss']:.4f}",
                lr=f"{stats['lr']:.2e}",
                img_s=f"{self.images_per_second:.1f}",
                refresh=False,
            )
            self._bar.update(1)
        elif now - self._last_log >= self._log_every_s:
            self._last_log = now
            logger.info(
                "epoch %d step %d/%d loss %.4f lr %.2e %.1f img/s",
                epoch + 1,
                self.done,
                self.total,
                stats["loss"],
                stats["lr"],
                self.images_per_second,
            )

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
