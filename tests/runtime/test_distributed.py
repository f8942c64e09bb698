"""Tests for dinokit.runtime.distributed and .device (torchrun env set-up, gloo collectives)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dinokit.runtime.device import resolve_device
from dinokit.runtime.distributed import (
    all_gather_objects,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    is_initialized,
    world_size,
)
from tests._processes import become_rank, free_port

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


def test_single_process_without_env() -> None:
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank) == (0, 1, 0)
    assert info.is_main and info.device == torch.device("cpu")
    assert not is_initialized() and world_size() == 1
    assert all_gather_objects({"a": 1}) == [{"a": 1}]
    barrier()
    t = torch.tensor([1.0, 3.0], requires_grad=True)
    out = all_reduce_mean(t)
    assert torch.equal(out, t.detach()) and out is not t and not out.requires_grad
    cleanup()


def test_auto_device_and_bad_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert init_distributed().device.type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        init_distributed("cuda")
    with pytest.raises(TypeError, match="floating-point"):
        all_reduce_mean(torch.tensor([1, 2]))


def test_a_bare_cuda_device_is_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert resolve_device("cuda:1", local_rank=3) == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu"), local_rank=3) == torch.device("cpu")


def test_partial_env_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="WORLD_SIZE is not set"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(RuntimeError, match="not an integer"):
        init_distributed("cpu")


def _worker(rank: int, size: int, port: int, out_dir: str) -> None:
    become_rank(rank, size, port)
    info = init_distributed("cpu")
    value = torch.tensor([float(rank + 1), 10.0 * rank])
    mean = all_reduce_mean(value)
    gathered = all_gather_objects([f"rank {rank}"] * (rank + 1))
    barrier()
    torch.save(
        {"rank": info.rank, "is_main": info.is_main, "mean": mean, "value": value,
         "distributed": is_initialized(), "gathered": gathered, "size": world_size()},
        Path(out_dir) / f"rank{rank}.pt",
    )  # fmt: skip
    cleanup()


def test_two_process_gloo_collectives(tmp_path: Path) -> None:
    size = 2
    mp.spawn(_worker, args=(size, free_port(), str(tmp_path)), nprocs=size)
    for rank in range(size):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["rank"] == rank and result["is_main"] == (rank == 0)
        assert result["distributed"] and result["size"] == size
        assert result["gathered"] == [["rank 0"], ["rank 1", "rank 1"]]
        torch.testing.assert_close(result["mean"], torch.tensor([1.5, 5.0]))
        torch.testing.assert_close(result["value"], torch.tensor([rank + 1.0, 10.0 * rank]))
