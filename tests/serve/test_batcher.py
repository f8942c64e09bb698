"""The micro-batcher: concurrent submissions share forward passes and get their own rows."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import Tensor

from dinokit.serve import MicroBatcher


class Recorder:
    """A stand-in model: each image's vector is its mean pixel times 2; records batch sizes."""

    def __init__(self, delay: float = 0.02) -> None:
        self.sizes: list[int] = []
        self.inference: list[bool] = []
        self.delay = delay

    def __call__(self, images: Tensor) -> Tensor:
        self.sizes.append(images.shape[0])
        self.inference.append(torch.is_inference_mode_enabled())
        time.sleep(self.delay)  # a forward pass takes time; requests pile up meanwhile
        return images.mean(dim=(1, 2, 3))[:, None] * 2


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows() -> None:
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.05)
    start = threading.Barrier(24)

    def request(i: int) -> float:
        start.wait()
        return float(batcher.submit(torch.full((3, 4, 4), float(i))).result(timeout=10)[0])

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(request, range(24)))
    batcher.close()
    assert results == [2.0 * i for i in range(24)]
    assert sum(model.sizes) == 24 and max(model.sizes) <= 8
    assert len(model.sizes) <= 6  # 24 requests in (about) 3 full batches, not 24 passes
    assert batcher.stats.batches == len(model.sizes) and batcher.stats.largest == max(model.sizes)
    assert all(model.inference)


def test_a_lone_request_is_answered_alone() -> None:
    model = Recorder(delay=0)
    batcher = MicroBatcher(model, max_batch=32, max_wait_s=0.01)
    # It does not wait for a full batch that never comes (the timeout only guards a hang).
    assert float(batcher.submit(torch.ones(3, 2, 2)).result(timeout=60)[0]) == 2.0
    assert model.sizes == [1]
    batcher.close()


def test_shapes_are_batched_apart_and_a_failing_pass_fails_only_its_requests() -> None:
    calls: list[tuple[int, ...]] = []

    def model(images: Tensor) -> Tensor:
        calls.append(tuple(images.shape))
        if images.shape[-1] == 3:
            raise RuntimeError("out of memory")
        return images.flatten(1).sum(1, keepdim=True)

    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.2)
    good = [batcher.submit(torch.ones(3, 2, 2)) for _ in range(2)]
    bad = batcher.submit(torch.ones(3, 3, 3))
    assert [float(f.result(timeout=10)[0]) for f in good] == [12.0, 12.0]
    with pytest.raises(RuntimeError, match="out of memory"):
        bad.result(timeout=10)
    assert sorted(calls) == [(1, 3, 3, 3), (2, 3, 2, 2)]
    # The worker survives and keeps serving; after close, submissions are refused.
    assert float(batcher.submit(torch.ones(3, 2, 2)).result(timeout=10)[0]) == 12.0
    batcher.close()
    with pytest.raises(RuntimeError, match="stopped"):
        batcher.submit(torch.ones(3, 2, 2))


def test_on_idle_runs_once_after_a_burst_and_a_failing_one_does_not_stop_the_worker() -> None:
    idle = threading.Semaphore(0)
    calls: list[int] = []

    def on_idle() -> None:
        calls.append(len(calls))
        idle.release()
        raise OSError("could not trim")

    batcher = MicroBatcher(Recorder(delay=0), max_wait_s=0, on_idle=on_idle, idle_s=0.01)
    assert not idle.acquire(timeout=0.1)  # nothing embedded yet: nothing to tidy
    for burst in (1, 2):
        assert float(batcher.submit(torch.ones(3, 2, 2)).result(timeout=60)[0]) == 2.0
        assert idle.acquire(timeout=60)  # the timeout only guards a hang
        assert calls == list(range(burst))
    # Once per burst: a quiet worker does not call it again (a slow machine cannot either).
    assert not idle.acquire(timeout=0.1)
    batcher.close()
