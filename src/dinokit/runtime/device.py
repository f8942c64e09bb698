"""The device a process computes on, chosen once from ``auto`` / ``cpu`` / ``cuda[:N]``."""

from __future__ import annotations

import torch


def resolve_device(requested: str | torch.device = "auto", *, local_rank: int = 0) -> torch.device:
    """The device ``requested`` names on this machine.

    Args:
        requested: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``,
            ``cuda:N`` or any other ``torch.device``.
        local_rank: The CUDA device index given to a bare ``cuda`` (the process's rank on
            this machine under ``torchrun``, 0 otherwise).

    Raises:
        RuntimeError: CUDA was requested and is not available.
    """
    if str(requested) == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {str(requested)!r} requested but CUDA is not available: "
                "use --device cpu or auto"
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
