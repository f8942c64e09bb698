"""Process-group set-up for ``torchrun`` (DDP), and collectives that are no-ops without one.

Replaces facebookresearch/dino ``utils.init_distributed_mode``, which reads the same
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables but also guesses SLURM layouts and
silently falls back to a fake single-GPU group: here, without the torchrun variables the run
is plainly single-process and no group is created; with them, the group is created or the
error is raised. NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

logger = logging.getLogger(__name__)

_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
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

    @property
    def is_distributed(self) -> bool:
        """Whether a process group exists (more than one process, or torchrun)."""
        return is_initialized()


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


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


def _resolve_device(device_pref: str | torch.device, local_rank: int) -> torch.device:
    if device_pref == "auto":
        device_pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_pref: str | torch.device = "auto") -> DistInfo:
    """Join the torchrun job, or describe the single process when not launched by torchrun.

    With ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set, creates the default process group
    (``env://``; NCCL for CUDA, gloo otherwise) and, on CUDA, selects device ``local_rank``.
    Without them, creates nothing. Calling it again with a group already up returns the info.

    Args:
        device_pref: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or a device.

    Returns:
        This process's :class:`DistInfo`.

    Raises:
        RuntimeError: only some of the variables are set, or they are not integers, or
            CUDA was requested and is missing.
    """
    if not any(v in os.environ for v in _ENV_VARS):
        device = _resolve_device(device_pref, 0)
        logger.debug("single process on %s (no torchrun variables)", device)
        return DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    rank, world_size, local_rank = (_env_int(v) for v in _ENV_VARS)
    device = _resolve_device(device_pref, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        logger.info("process group up: rank %d of %d, %s on %s", rank, world_size, backend, device)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


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


def cleanup() -> None:
    """Destroy the process group if one exists (call once at the end of the run)."""
    if is_initialized():
        dist.destroy_process_group()
        logger.debug("process group destroyed")
