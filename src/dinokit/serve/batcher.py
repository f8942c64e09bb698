"""A micro-batcher: requests that arrive together share one forward pass.

Request handlers :meth:`MicroBatcher.submit` one preprocessed image each and wait on the
returned future. One worker thread owns the model: it takes the first waiting image, gathers
whatever else arrives within ``max_wait_s`` (up to ``max_batch`` images), runs them as one
batch (one batch per distinct shape, for ``native`` preprocessing) and hands each caller its
row. Under load the queue fills while the model runs, so the next batch is full at once and
the wait costs nothing; a lone request waits at most ``max_wait_s``. This is what
clip-retrieval's and Triton's dynamic batching do, in a few lines of the standard library.
When no image has come for ``idle_s`` after a batch, the worker calls ``on_idle`` once (the
server gives the allocator's free memory back then, at no cost to a waiting request).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 32
"""Images per forward pass at most."""

DEFAULT_MAX_WAIT_S = 0.005
"""How long the first image of a batch waits for others (seconds)."""

DEFAULT_IDLE_S = 0.5
"""How long the worker waits without images before it calls ``on_idle`` (seconds)."""


@dataclass
class BatcherStats:
    """What the batcher has done so far.

    Attributes:
        batches: Forward passes run.
        items: Images embedded.
        largest: Most images in one forward pass.
    """

    batches: int = 0
    items: int = 0
    largest: int = 0


@dataclass
class _Job:
    image: Tensor
    future: Future[Tensor]


_STOP = object()


class MicroBatcher:
    """Runs ``forward`` on batches of images submitted one by one from many threads.

    Args:
        forward: ``(B, 3, H, W) -> (B, D)``; called only from the worker thread, inside
            ``torch.inference_mode``.
        max_batch: Images per call at most.
        max_wait_s: How long the first image of a batch waits for more.
        name: Name of the worker thread.
        on_idle: Called from the worker thread once after each burst of batches, when no
            image has arrived for ``idle_s``.
        idle_s: See ``on_idle``.
    """

    def __init__(
        self,
        forward: Callable[[Tensor], Tensor],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        name: str = "dinokit-batcher",
        on_idle: Callable[[], None] | None = None,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_batch must be >= 1 and max_wait_s >= 0 ({max_batch}, {max_wait_s})"
            )
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_idle = on_idle
        self.idle_s = idle_s
        self.stats = BatcherStats()
        self._queue: queue.Queue[_Job | object] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, image: Tensor) -> Future[Tensor]:
        """Queue one image.

        Args:
            image: (3, H, W) preprocessed image.

        Returns:
            A future holding its (D,) vector, or the exception the forward pass raised.

        Raises:
            RuntimeError: The batcher is closed.
        """
        if self._closed:
            raise RuntimeError("the model worker has stopped")
        future: Future[Tensor] = Future()
        self._queue.put(_Job(image, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the images already queued."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and what arrives within ``max_wait_s``; and whether to stop afterwards."""
        jobs = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is _STOP:
                return jobs, True
            assert isinstance(item, _Job)
            jobs.append(item)
        return jobs, False

    def _work(self) -> None:
        stop = False
        busy = False  # batches run since on_idle was last called
        while not stop:
            try:
                item = self._queue.get(timeout=self.idle_s if busy else None)
            except queue.Empty:
                busy = False
                self._idle()
                continue
            if item is _STOP:
                break
            assert isinstance(item, _Job)
            jobs, stop = self._gather(item)
            self._run(jobs)
            busy = self.on_idle is not None

    def _idle(self) -> None:
        assert self.on_idle is not None
        try:
            self.on_idle()
        except Exception:  # housekeeping only: the worker keeps serving
            logger.exception("the idle callback failed")

    def _run(self, jobs: list[_Job]) -> None:
        # One forward pass per distinct shape (``native`` preprocessing keeps aspect ratios).
        by_shape: dict[tuple[int, ...], list[_Job]] = {}
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                by_shape.setdefault(tuple(job.image.shape), []).append(job)
        for group in by_shape.values():
            try:
                with torch.inference_mode():
                    out = self.forward(torch.stack([job.image for job in group]))
            except Exception as exc:  # handed to each caller; the worker keeps serving
                logger.exception("forward pass of %d images failed", len(group))
                for job in group:
                    job.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.items += len(group)
            self.stats.largest = max(self.stats.largest, len(group))
            for job, row in zip(group, out, strict=True):
                job.future.set_result(row)
