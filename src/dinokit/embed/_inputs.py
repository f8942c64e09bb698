"""Identities and shards of listed images, and the embedding of a shard into row tables,
shared by the in-memory and file runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._progress import ProgressBar
from ..data import ImageRecord
from ..embeddings import make_table
from ..runtime.distributed import ProcessInfo
from .config import EmbedConfig
from .embedder import EmbeddedBatch, Embedder

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


def embed_shard(
    embedder: Embedder,
    mine: list[ImageRecord],
    roots: list[str],
    config: EmbedConfig,
    process: ProcessInfo,
    failed: list[dict[str, str]],
) -> Iterator[Any]:
    """Embed ``mine`` into row tables of at most ``config.chunk_rows`` rows, in input order.

    Args:
        embedder: The model and recipe.
        mine: This rank's images.
        roots: The output's input roots (the tables' ``root`` column indexes them).
        config: The run (``chunk_rows``, ``progress``).
        process: This process's rank (a bar on rank 0's terminal, log lines elsewhere).
        failed: Gets the unreadable images as ``{"path", "reason"}`` entries.
    """
    root_index = {r: i for i, r in enumerate(roots)}
    who = f"rank {process.rank}: " if process.world_size > 1 else ""
    bar = None if config.progress and process.is_main else False
    progress = ProgressBar(len(mine), desc=f"{who}embed", unit="image", bar=bar, logger=logger)
    pending: list[EmbeddedBatch] = []

    def table() -> Any:
        recs = [mine[i] for b in pending for i in b.indices]
        tokens = [t for b in pending for t in (b.patch_tokens or [])]
        return make_table(
            [r.relpath for r in recs],
            [r.label for r in recs],
            np.concatenate([b.vectors for b in pending]),
            [root_index[str(r.root)] for r in recs],
            patch_tokens=tokens if embedder.patch_tokens else None,
            grids=[g for b in pending for g in (b.grids or [])],
        )

    try:
        for batch in embedder.iter_batches(mine):
            failed.extend({"path": f.path, "reason": f.reason} for f in batch.failed)
            pending.append(batch)
            progress.update(len(batch.indices) + len(batch.failed))
            if sum(len(b.indices) for b in pending) >= config.chunk_rows:
                yield table()
                pending = []
        if any(len(b.indices) for b in pending):
            yield table()
    finally:
        progress.close()
