"""Identities and shards of listed images, shared by the in-memory and file runs."""

from __future__ import annotations

from ..data import ImageRecord
from ..training.distributed import DistInfo
from .embedder import EmbeddedBatch

Key = tuple[str, str]
"""An image's identity in an output: (absolute input root, path relative to it)."""


def key(record: ImageRecord) -> Key:
    """The identity of a listed image."""
    return (str(record.root), record.relpath)


def roots_of(records: list[ImageRecord]) -> list[str]:
    """The distinct input roots of ``records``, in order of first appearance."""
    return list(dict.fromkeys(str(r.root) for r in records))


def shard(items: list[ImageRecord], dist: DistInfo) -> list[ImageRecord]:
    """Rank ``r``'s contiguous share of ``items`` (merging ranks in order keeps the order)."""
    n, world = len(items), dist.world_size
    return items[dist.rank * n // world : (dist.rank + 1) * n // world]


def failures(batch: EmbeddedBatch) -> list[dict[str, str]]:
    """The unreadable images of a batch as ``{"path", "reason"}`` entries."""
    return [{"path": f.path, "reason": f.reason} for f in batch.failed]
