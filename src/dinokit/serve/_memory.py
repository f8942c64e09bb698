"""glibc malloc settings that keep a long-running server's memory flat.

Under load, glibc's allocator kept memory the server had freed: measured with ``mallinfo2``
in ``benchmarks/serve_load.py``'s server (DINO ViT-S/16, bf16), the memory in use stayed at
about 300 MiB while the free memory held in the heaps grew from 45 to 170 MiB over four
rounds of 400 uploads, and the resident size with it. Two defaults cause it:

- Each thread that allocates can get an arena of its own, up to 8 per core (16 here): the
  thread pool that decodes uploads and the model thread, whose batches of every size from 1
  to ``max_batch`` leave blocks of every size, spread their free memory over arenas that
  never serve each other.
- Free memory inside a heap is given back only at its top, and batch activations are freed in
  the middle of it.

:func:`tune_allocator` caps the arenas (two: the heaps then stopped growing after the first
round) and :func:`release_free_memory`, which the batcher calls when uploads stop coming,
gives the free pages back. Both do nothing off glibc (musl, macOS, Windows).

Not done: a fixed mmap threshold (each large block mapped and unmapped on its own) also kept
the memory flat, but cost about 12,000 page faults and 27 ms of system CPU time per ViT-S/16
image (a third more CPU per upload). See ``mallopt(3)`` and ``malloc_trim(3)``.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""``mallopt`` parameter number (glibc's ``malloc.h``)."""

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


def tune_allocator(*, arena_max: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas; call before the server's threads start (a thread keeps the
    arena it has).

    Args:
        arena_max: Malloc arenas at most.

    Returns:
        Whether the setting was applied (False off glibc, or if glibc refused it).
    """
    libc = glibc()
    if libc is None:
        logger.debug("not glibc: the allocator keeps its defaults")
        return False
    done = bool(libc.mallopt(M_ARENA_MAX, arena_max))
    logger.debug(
        "glibc allocator: %d arenas at most (%s)", arena_max, "applied" if done else "refused"
    )
    return done


def release_free_memory() -> None:
    """Give the pages glibc holds free in its heaps back to the system (``malloc_trim(0)``);
    nothing off glibc."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
