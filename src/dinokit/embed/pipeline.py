"""``embed``: image folders -> one vector per image, in a file or in memory.

The run: list the inputs (labelled-folder rule, unusable entries reported), build the
:class:`~dinokit.embed.Embedder`, compare with what is already there (an existing output with
the same recipe is extended with the new images only; an interrupted run's parts are picked up),
embed the rest in Parquet parts (each rank of a ``torchrun`` job its own contiguous shard),
then rank 0 merges everything into the output and writes the skipped list next to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import ImageRecord, list_images
from ..embeddings import Embeddings, make_table
from ..runtime.distributed import (
    ProcessInfo,
    all_gather_objects,
    cleanup,
    init_distributed,
    is_initialized,
)
from ._file_job import FileJob
from ._inputs import embed_shard, roots_of, shard
from .config import EmbedConfig, EmbedSummary
from .embedder import Embedder


def run_embed(config: EmbedConfig) -> tuple[EmbedSummary, Embeddings | None]:
    """Run an embedding job (the library side of ``dinokit embed``).

    Under ``torchrun`` every rank embeds a shard; rank 0 writes the output.

    Returns:
        The summary, and the embeddings themselves when ``config.out`` is ``None``.

    Raises:
        FileExistsError: The output (or an interrupted run's parts) was made with another
            model, options or inputs and ``overwrite`` is false.
        FileNotFoundError, ValueError: Missing inputs, no images, bad options.
    """
    if config.patch_tokens and config.out is None:
        raise ValueError("patch tokens are written to a file: pass out=... .parquet")
    owns_group = not is_initialized()
    process = init_distributed(config.device)
    try:
        listing = list_images(config.inputs)
        embedder = Embedder(**{**vars(config), "device": str(process.device)})
        listed_skips = [{"path": s.path, "reason": s.reason} for s in listing.skipped]
        if config.out is None:
            return _in_memory(embedder, listing.records, listed_skips, process, config)
        job = FileJob(config, embedder, listing.records, listed_skips, process)
        return job.run(), None
    finally:
        if owns_group and process.world_size > 1:
            cleanup()


def embed(inputs: str | Path | list[str | Path], **options: Any) -> Embeddings:
    """Embed every image of folders, list files or image files.

    The Python face of ``dinokit embed``: ``options`` are :class:`EmbedConfig` fields
    (``model`` is required; ``feature``, ``preprocess``, ``out``...).

    Returns:
        The embeddings: (N, D) float32 vectors (L2-normalised unless ``normalize=False``),
        paths relative to their input root, labels of labelled folders, and the metadata
        (model record, fingerprint, preprocessing, feature, roots, skipped images). With
        ``out`` the file is written first (or extended) and read back.

    Example:
        >>> emb = dinokit.embed("photos/", model="runs/shop", out="photos.parquet")
        >>> emb.vectors.shape
        (1234, 384)
    """
    folders = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    summary, result = run_embed(EmbedConfig(inputs=folders, **options))
    if result is not None:
        return result
    assert summary.out is not None
    return Embeddings.load(summary.out)


def _in_memory(
    embedder: Embedder,
    records: list[ImageRecord],
    listed_skips: list[dict[str, str]],
    process: ProcessInfo,
    config: EmbedConfig,
) -> tuple[EmbedSummary, Embeddings]:
    import pyarrow as pa

    roots = roots_of(records)
    failed: list[dict[str, str]] = []
    local = (
        list(embed_shard(embedder, shard(records, process), roots, config, process, failed)),
        failed,
    )
    gathered = all_gather_objects(local)
    empty = make_table([], [], np.zeros((0, embedder.dim), dtype=np.float32), [])
    table = pa.concat_tables([empty] + [t for tables, _ in gathered for t in tables])
    skipped = listed_skips + [f for _, fails in gathered for f in fails]
    metadata = {**embedder.metadata(), "roots": roots, "skipped": skipped, "count": len(table)}
    summary = EmbedSummary(None, len(table), len(table), 0, 0, skipped, None, False, metadata)
    return summary, Embeddings.from_table(table, metadata)
