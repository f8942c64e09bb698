"""Process-group set-up for ``torchrun`` (DDP), and collectives that are no-ops without one.

Replaces facebookresearch/dino ``utils.init_distributed_mode``, which reads the same
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables but also guesses SLURM layouts and
silently falls back to a fake single-GPU group: here, without the torchrun variables the run
is plainly single-process and no group is created; with them, the group is created or the
error is raised. NCCL on CUDA, gloo on the CPU. Like dinov2's ``dinov2/distributed``, it sits
below everything that runs a model (training and embedding both use it).

``dist`` in this code base always means ``torch.distributed``; where a process stands in the
job is a :class:`ProcessInfo`, usually named ``process``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from .device import resolve_device

logger = logging.getLogger(__name__)

_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
T = TypeVar("T")


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands in the job.

    Attributes:
        rank: Global rank, 0 .. world_size - 1.
        world_size: Number of processes (1 without torchrun).
        local_rank: Rank on this machine; also the CUDA device index.
        device: The device this process trains on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """The process that writes files and logs (rank 0)."""
        return self.rank == 0


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes in the default group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        present = [v for v in _ENV_VARS if v in os.environ]
        raise RuntimeError(
            f"{name} is not set but {', '.join(present)} is: launch with torchrun "
            "(which sets RANK, WORLD_SIZE and LOCAL_RANK) or unset them"
        )
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device_pref: str | torch.device = "auto") -> ProcessInfo:
    """Join the torchrun job, or describe the single process when not launched by torchrun.

    With ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set, creates the default process group
    (``env://``; NCCL for CUDA, gloo otherwise) and, on CUDA, selects device ``local_rank``.
    Without them, creates nothing. Calling it again with a group already up returns the info.

    Args:
        device_pref: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or a device.

    Returns:
        This process's :class:`ProcessInfo`.

    Raises:
        RuntimeError: only some of the variables are set, or they are not integers, or
            CUDA was requested and is missing.
    """
    if not any(v in os.environ for v in _ENV_VARS):
        device = resolve_device(device_pref)
        logger.debug("single process on %s (no torchrun variables)", device)
        return ProcessInfo(rank=0, world_size=1, local_rank=0, device=device)
    rank, size, local_rank = (_env_int(v) for v in _ENV_VARS)
    device = resolve_device(device_pref, local_rank=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        logger.info("process group up: rank %d of %d, %s on %s", rank, size, backend, device)
    return ProcessInfo(rank=rank, world_size=size, local_rank=local_rank, device=device)


def barrier() -> None:
    """Wait for every process; a no-op without a process group."""
    if is_initialized():
        dist.barrier()


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over all processes (e.g. a loss for logging).

    Args:
        tensor: A floating-point tensor of the same shape on every rank, on the group's
            device (CUDA for NCCL).

    Returns:
        A new tensor holding the mean; ``tensor`` is left unchanged. Without a process group,
        a detached copy of ``tensor``.
    """
    if not tensor.is_floating_point():
        raise TypeError(f"all_reduce_mean needs a floating-point tensor, got {tensor.dtype}")
    out = tensor.detach().clone()
    if is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def all_gather_objects(obj: T) -> list[T]:
    """Every process's ``obj`` (picklable), in rank order, on every process.

    Without a process group, ``[obj]``.
    """
    if not is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def cleanup() -> None:
    """Destroy the process group if one exists (call once at the end of the run)."""
    if is_initialized():
        dist.destroy_process_group()
        logger.debug("process group destroyed")
