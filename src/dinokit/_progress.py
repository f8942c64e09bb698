"""Progress of long loops: a tqdm bar with an ETA on a terminal, log lines otherwise.

Training, embedding and duplicate search share it. On a terminal (standard error is a TTY)
the bar redraws in place; in a log file or a pipe, where a bar would fill the file with
carriage returns, the same facts (done / total, rate, time left) come as a log line every
``log_every_s`` seconds and once at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

_logger = logging.getLogger(__name__)


def on_terminal() -> bool:
    """Whether standard error is an interactive terminal (where a bar can redraw)."""
    return sys.stderr.isatty()


def format_seconds(seconds: float) -> str:
    """``1:02:03`` or ``02:03``, as tqdm writes durations."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """A bar over ``total`` items, or periodic log lines.

    Args:
        total: Items of the whole loop (None when unknown: no ETA).
        desc: What is being done (``embed``, ``epoch 3``...).
        unit: The item counted (``image``, ``step``...).
        done: Items already done (a resumed loop).
        bar: Draw a bar: ``None`` on a terminal only, ``False`` never (log lines).
        log_every_s: Without a bar, the shortest time between two log lines.
        logger: Where the lines go (the caller's module logger).
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str,
        done: int = 0,
        bar: bool | None = None,
        log_every_s: float = 30.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.total = total
        self.done = done
        self.desc = desc
        self.unit = unit
        self._start_done = done
        self._start = self._last_log = time.perf_counter()
        self._log_every_s = log_every_s
        self._logger = logger or _logger
        self._postfix: dict[str, str] = {}
        self._bar: Any = None
        if bar if bar is not None else on_terminal():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=done,
                desc=desc,
                unit=unit,
                dynamic_ncols=True,
                smoothing=0.1,
                file=sys.stderr,
            )

    @property
    def drawing(self) -> bool:
        """Whether a bar is shown (else log lines)."""
        return self._bar is not None

    def update(
        self, n: int = 1, *, desc: str | None = None, postfix: dict[str, str] | None = None
    ) -> None:
        """Count ``n`` more items; optionally change the description and the extra fields."""
        self.done += n
        if desc is not None:
            self.desc = desc
        if postfix is not None:
            self._postfix = postfix
        if self._bar is not None:
            if desc is not None:
                self._bar.set_description(desc, refresh=False)
            if postfix is not None:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.perf_counter()
        finished = self.total is not None and self.done >= self.total
        if finished or now - self._last_log >= self._log_every_s:
            self._last_log = now
            self._logger.info("%s", self.status())

    def set_total(self, total: int | None) -> None:
        """The loop's length changed."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def status(self) -> str:
        """One line: ``embed 512/2048 images, 85.3 images/s, 00:18 left``."""
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        of = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.desc} {self.done}{of} {self.unit}s"]
        parts += [f"{key} {value}" for key, value in self._postfix.items()]
        parts.append(f"{rate:.1f} {self.unit}s/s")
        if self.total is not None and rate > 0:
            left = max(self.total - self.done, 0) / rate
            parts.append(f"{format_seconds(left)} left" if left else "done")
        return ", ".join(parts)

    def close(self) -> None:
        """Remove the bar (closing twice is harmless)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
