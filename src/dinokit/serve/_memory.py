"""glibc malloc settings that keep a long-running server's memory flat.

Under load, glibc's allocator holds on to memory the server has freed. Two of its defaults
cause it (measured with ``mallinfo2`` in ``benchmarks/serve_load.py``'s server; see
benchmarks/README.md):

- The mmap threshold is dynamic: once a large block (a batch's activations, tens of MiB for a
  ViT-S/16) is freed, blocks up to that size come from the heap instead of ``mmap``. Batches
  of every size from 1 to ``max_batch`` then leave holes of every size in the heap, which can
  neither be reused for the next, differently-sized batch nor given back, so the free part
  of the heap grows round after round while the memory in use stays the same.
- Each thread that allocates can get an arena of its own (up to 8 per core): the thread pool
  that decodes uploads spreads its free memory over many arenas that never serve each other.

:func:`tune_allocator` fixes the mmap threshold (large blocks are mapped and unmapped, so a
freed batch gives its memory back) and caps the arenas. It is a no-op off glibc (musl, macOS,
Windows), where ``mallopt`` is missing. See ``mallopt(3)``.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""``mallopt`` parameters (glibc's ``malloc.h``)."""

MMAP_THRESHOLD = 1 << 20
"""Blocks of this many bytes or more are mapped on their own and unmapped when freed."""

ARENA_MAX = 2
"""Malloc arenas at most (glibc's default is 8 per core)."""


def glibc() -> Any | None:
    """The process's C library when it is glibc (it has ``mallopt`` and ``malloc_trim``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    wanted = ("gnu_get_libc_version", "mallopt", "malloc_trim")
    return libc if all(hasattr(libc, name) for name in wanted) else None


def tune_allocator(*, mmap_threshold: int = MMAP_THRESHOLD, arena_max: int = ARENA_MAX) -> bool:
    """Fix glibc's mmap threshold and cap its arenas; call before the server's threads start.

    Args:
        mmap_threshold: Bytes from which a block is mapped on its own.
        arena_max: Malloc arenas at most.

    Returns:
        Whether the settings were applied (False off glibc, or if glibc refused them).
    """
    libc = glibc()
    if libc is None:
        logger.debug("not glibc: the allocator keeps its defaults")
        return False
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(M_ARENA_MAX, arena_max)
    )
    logger.debug(
        "glibc allocator: mmap threshold %d bytes, %d arenas at most (%s)",
        mmap_threshold,
        arena_max,
        "applied" if done else "refused",
    )
    return done
