"""The training progress bar: epoch, step, loss, lr, images/s and time left."""

from __future__ import annotations

import logging
import time

from .._progress import ProgressBar

logger = logging.getLogger(__name__)

_SMOOTHING = 0.9  # exponential moving average of the images/s reading


class Progress:
    """A bar over all steps of the run on a terminal, or periodic log lines.

    Args:
        total_steps: Steps of the whole run.
        done_steps: Steps already done (resume).
        enabled: Show progress (main process, ``--no-progress`` off): a bar on a terminal,
            log lines otherwise. Disabled: log lines only.
        log_every_s: Without a bar, log a status line this often.
    """

    def __init__(
        self, total_steps: int, done_steps: int, *, enabled: bool, log_every_s: float = 60.0
    ) -> None:
        self.images_per_second = 0.0
        self._last = time.perf_counter()
        self._bar = ProgressBar(
            total_steps,
            desc="epoch 1",
            unit="step",
            done=done_steps,
            bar=None if enabled else False,
            log_every_s=log_every_s,
            logger=logger,
        )

    @property
    def done(self) -> int:
        """Steps done."""
        return self._bar.done

    def update(self, stats: dict[str, float], n_images: int, *, epoch: int) -> None:
        """Record one step of ``n_images`` images (all processes)."""
        now = time.perf_counter()
        rate = n_images / max(now - self._last, 1e-9)
        self._last = now
        self.images_per_second = (
            rate
            if not self.images_per_second
            else _SMOOTHING * self.images_per_second + (1 - _SMOOTHING) * rate
        )
        self._bar.update(
            1,
            desc=f"epoch {epoch + 1}",
            postfix={
                "loss": f"{stats['loss']:.4f}",
                "lr": f"{stats['lr']:.2e}",
                "img/s": f"{self.images_per_second:.1f}",
            },
        )

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()
