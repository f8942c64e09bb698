"""Identities, shards and progress of listed images, shared by the in-memory and file runs."""

from __future__ import annotations

import logging

from .._progress import ProgressBar
from ..data import ImageRecord
from ..runtime.distributed import ProcessInfo
from .config import EmbedConfig
from .embedder import EmbeddedBatch

logger = logging.getLogger(__name__)

Key = tuple[str, str]
"""An image's identity in an output: (absolute input root, path relative to it)."""


def key(record: ImageRecord) -> Key:
    """The identity of a listed image."""
    return (str(record.root), record.relpath)


def roots_of(records: list[ImageRecord]) -> list[str]:
    """The distinct input roots of ``records``, in order of first appearance."""
    return list(dict.fromkeys(str(r.root) for r in records))


def shard(items: list[ImageRecord], process: ProcessInfo) -> list[ImageRecord]:
    """Rank ``r``'s contiguous share of ``items`` (merging ranks in order keeps the order)."""
    n, world = len(items), process.world_size
    return items[process.rank * n // world : (process.rank + 1) * n // world]


def failures(batch: EmbeddedBatch) -> list[dict[str, str]]:
    """The unreadable images of a batch as ``{"path", "reason"}`` entries."""
    return [{"path": f.path, "reason": f.reason} for f in batch.failed]


def embed_progress(total: int, config: EmbedConfig, process: ProcessInfo) -> ProgressBar:
    """Progress over a shard: a bar on rank 0's terminal, log lines elsewhere or if disabled."""
    who = f"rank {process.rank}: " if process.world_size > 1 else ""
    return ProgressBar(
        total,
        desc=f"{who}embed",
        unit="image",
        bar=None if config.progress and process.is_main else False,
        logger=logger,
    )
