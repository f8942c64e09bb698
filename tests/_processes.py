"""Helpers for tests that start other processes: a free local port, and the variables
``torchrun`` sets for one rank of a job on this machine."""

from __future__ import annotations

import os
import socket

import torch


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def become_rank(rank: int, world_size: int, port: int) -> None:
    """Make this process rank ``rank`` of a ``world_size``-process job rendezvousing on
    ``port``, as ``torchrun`` would, with one thread (the machine's cores are shared)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
