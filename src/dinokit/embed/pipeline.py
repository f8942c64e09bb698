"""``embed``: image folders -> one vector per image, in a file or in memory.

The run: list the inputs (labelled-folder rule, unusable entries reported), build the
:class:`~dinokit.embed.Embedder`, compare with what is already there (an existing output with
the same recipe is extended with the new images only; an interrupted run's parts are picked up),
embed the rest in Parquet parts (each rank of a ``torchrun`` job its own contiguous shard),
then rank 0 merges everything into the output and writes the skipped list next to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import ImageRecord, list_images
from ..training.distributed import DistInfo, barrier, cleanup, init_distributed, is_initialized
from ._output import write_output, write_skipped
from ._rows import iter_tables, make_table, read_metadata
from ._workdir import WorkDir
from .config import EmbedConfig, EmbedSummary
from .embedder import RECIPE_KEYS, EmbeddedBatch, Embedder, default_workers
from .embeddings import Embeddings

logger = logging.getLogger(__name__)

Key = tuple[str, str]
"""An image's identity in an output: (absolute input root, path relative to it)."""


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
    owns_group = not is_initialized()
    dist = init_distributed(config.device)
    try:
        listing = list_images(config.inputs)
        embedder = Embedder(
            config.model,
            weights=config.weights,
            branch=config.branch,
            preprocess=config.preprocess,
            size=config.size,
            feature=config.feature,
            normalize=config.normalize,
            patch_tokens=config.patch_tokens,
            batch_size=config.batch_size,
            workers=default_workers() if config.workers is None else config.workers,
            precision=config.precision,
            device=dist.device,
        )
        listed_skips = [{"path": s.path, "reason": s.reason} for s in listing.skipped]
        if config.out is None:
            return _in_memory(embedder, listing.records, listed_skips, dist)
        job = _FileJob(config, embedder, listing.records, listed_skips, dist)
        return job.run(), None
    finally:
        if owns_group and dist.world_size > 1:
            cleanup()


def embed(
    inputs: str | Path | list[str | Path],
    *,
    model: str | Path,
    weights: str | Path | None = None,
    branch: str = "teacher",
    preprocess: str | None = None,
    size: int | None = None,
    feature: str = "cls",
    normalize: bool = True,
    patch_tokens: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
    precision: str = "auto",
    device: str = "auto",
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Embeddings:
    """Embed every image of folders, list files or image files.

    The Python face of ``dinokit embed`` (see :class:`EmbedConfig` for the options).

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
    config = EmbedConfig(
        inputs=folders,
        model=model,
        weights=weights,
        branch=branch,
        preprocess=preprocess,
        size=size,
        feature=feature,
        normalize=normalize,
        patch_tokens=patch_tokens,
        batch_size=batch_size,
        workers=workers,
        precision=precision,
        device=device,
        out=out,
        overwrite=overwrite,
    )
    summary, result = run_embed(config)
    if result is not None:
        return result
    assert summary.out is not None
    return Embeddings.load(summary.out)


def _key(record: ImageRecord) -> Key:
    return (str(record.root), record.relpath)


def _roots_of(records: list[ImageRecord]) -> list[str]:
    return list(dict.fromkeys(str(r.root) for r in records))


def _shard(items: list[ImageRecord], dist: DistInfo) -> list[ImageRecord]:
    """Rank ``r``'s contiguous share of ``items`` (merging ranks in order keeps the order)."""
    n, world = len(items), dist.world_size
    return items[dist.rank * n // world : (dist.rank + 1) * n // world]


def _failures(batch: EmbeddedBatch) -> list[dict[str, str]]:
    return [{"path": f.path, "reason": f.reason} for f in batch.failed]


def _in_memory(
    embedder: Embedder,
    records: list[ImageRecord],
    listed_skips: list[dict[str, str]],
    dist: DistInfo,
) -> tuple[EmbedSummary, Embeddings]:
    mine = _shard(records, dist)
    offset = dist.rank * len(records) // dist.world_size
    indices: list[np.ndarray[Any, Any]] = []
    vectors: list[np.ndarray[Any, Any]] = []
    failed: list[dict[str, str]] = []
    for batch in embedder.iter_batches(mine):
        indices.append(batch.indices + offset)
        vectors.append(batch.vectors)
        failed.extend(_failures(batch))
    local = (
        np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
        np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), dtype=np.float32),
        failed,
    )
    gathered = [local]
    if dist.world_size > 1:
        import torch.distributed

        gathered = [local] * dist.world_size
        torch.distributed.all_gather_object(gathered, local)
    order = np.concatenate([g[0] for g in gathered])
    matrix = np.concatenate([g[1] for g in gathered])[np.argsort(order, kind="stable")]
    order.sort()
    skipped = listed_skips + [f for g in gathered for f in g[2]]
    roots = _roots_of(records)
    root_index = {r: i for i, r in enumerate(roots)}
    kept = [records[i] for i in order]
    metadata = {**embedder.metadata(), "roots": roots, "skipped": skipped, "count": len(kept)}
    result = Embeddings(
        paths=[r.relpath for r in kept],
        labels=[r.label for r in kept],
        vectors=matrix,
        metadata=metadata,
        roots=np.asarray([root_index[str(r.root)] for r in kept], dtype=np.int16),
    )
    summary = EmbedSummary(None, len(kept), len(kept), 0, 0, skipped, None, False, metadata)
    return summary, result


@dataclass
class _Existing:
    """Rows already embedded with the same recipe: in the output, in an interrupted run."""

    output_keys: list[Key]
    part_keys: list[Key]
    resume: bool


class _FileJob:
    """One run that writes ``config.out`` (see the module docstring for the steps)."""

    def __init__(
        self,
        config: EmbedConfig,
        embedder: Embedder,
        records: list[ImageRecord],
        listed_skips: list[dict[str, str]],
        dist: DistInfo,
    ) -> None:
        assert config.out is not None
        self.config = config
        self.out = Path(config.out).expanduser()
        self.embedder = embedder
        self.records = records
        self.listed_skips = listed_skips
        self.dist = dist
        self.work = WorkDir.of(self.out)
        meta = embedder.metadata()
        self.recipe = {k: meta[k] for k in RECIPE_KEYS}
        self.roots = _roots_of(records)

    def run(self) -> EmbedSummary:
        """Plan, embed this rank's shard, merge on rank 0."""
        existing = self._plan()
        by_key = {_key(r): r for r in self.records}
        done = set(existing.output_keys) | set(existing.part_keys)
        remaining = [r for r in self.records if _key(r) not in done]
        attempt = self.work.next_attempt() if existing.resume else 1
        barrier()  # every rank has read the old state before rank 0 changes it
        if self.dist.is_main and not existing.resume:
            self.work.reset({"recipe": self.recipe, "roots": self.roots})
        barrier()
        failed = self._embed_shard(_shard(remaining, self.dist), attempt)
        self.work.write_skipped(attempt, self.dist.rank, failed)
        barrier()
        summary = self._summary(existing, remaining, by_key, attempt)
        if self.dist.is_main:
            self._merge(summary, existing, by_key)
        barrier()  # the output is complete for every rank
        return summary

    def _plan(self) -> _Existing:
        """What can be kept; refuses (without ``overwrite``) what was made differently."""
        output_keys: list[Key] = []
        if self.out.exists() and not self.config.overwrite:
            old = read_metadata(self.out) or {}
            different = [k for k in RECIPE_KEYS if old.get(k) != self.recipe[k]]
            if different:
                raise FileExistsError(
                    f"{self.out}: already exists, made with a different "
                    f"{', '.join(different)}; pass --overwrite to replace it, or another --out"
                )
            old_roots = [str(r) for r in old.get("roots") or []]
            foreign = [r for r in old_roots if r not in self.roots]
            if foreign:
                raise FileExistsError(
                    f"{self.out}: already exists, made from other inputs ({foreign[0]}); "
                    "pass --overwrite to replace it, or another --out"
                )
            self.roots = old_roots + [r for r in self.roots if r not in old_roots]
            output_keys = self._keys_of(iter_tables(self.out), old_roots)
        state = self.work.read_state()
        if state is None or self.config.overwrite:
            return _Existing(output_keys, [], False)
        same = state.get("recipe") == self.recipe and state.get("roots") == self.roots
        if not same:
            if self.work.parts():
                raise FileExistsError(
                    f"{self.out}: an interrupted run with other options or inputs left "
                    f"{self.work.path}; pass --overwrite to start again"
                )
            return _Existing(output_keys, [], False)
        import pyarrow.parquet as pq

        tables = (pq.read_table(p, columns=["path", "root"]) for p in self.work.parts())
        part_keys = self._keys_of(tables, self.roots)
        if part_keys:
            logger.info("resuming: %d images embedded by an interrupted run", len(part_keys))
        return _Existing(output_keys, part_keys, True)

    @staticmethod
    def _keys_of(tables: Iterator[Any], roots: list[str]) -> list[Key]:
        keys: list[Key] = []
        for table in tables:
            paths, rows = table.column("path").to_pylist(), table.column("root").to_pylist()
            keys.extend((roots[r], p) for p, r in zip(paths, rows, strict=True))
        return keys

    def _embed_shard(self, mine: list[ImageRecord], attempt: int) -> list[dict[str, str]]:
        """Embed ``mine`` into parts of at most ``chunk_rows`` rows; returns the failures."""
        root_index = {r: i for i, r in enumerate(self.roots)}
        failed: list[dict[str, str]] = []
        pending: list[tuple[list[ImageRecord], EmbeddedBatch]] = []
        rows, seq, done, start = 0, 0, 0, time.perf_counter()
        who = f"rank {self.dist.rank}: " if self.dist.world_size > 1 else ""

        def flush() -> None:
            nonlocal pending, rows, seq
            if not rows:
                return
            recs = [r for batch_recs, _ in pending for r in batch_recs]
            batches = [b for _, b in pending]
            tokens = [t for b in batches for t in (b.patch_tokens or [])]
            table = make_table(
                [r.relpath for r in recs],
                [r.label for r in recs],
                np.concatenate([b.vectors for b in batches]),
                [root_index[str(r.root)] for r in recs],
                patch_tokens=tokens if self.embedder.patch_tokens else None,
                grids=[g for b in batches for g in (b.grids or [])],
            )
            import pyarrow.parquet as pq

            from ._formats import atomic_write

            path = self.work.part_path(attempt, self.dist.rank, seq)
            atomic_write(path, lambda tmp: pq.write_table(table, tmp))
            pending, rows, seq = [], 0, seq + 1

        for batch in self.embedder.iter_batches(mine):
            failed.extend(_failures(batch))
            pending.append(([mine[i] for i in batch.indices], batch))
            rows += len(batch.indices)
            done += len(batch.indices) + len(batch.failed)
            if rows >= self.config.chunk_rows:
                flush()
                rate = done / max(time.perf_counter() - start, 1e-9)
                logger.info("%s%d/%d images (%.1f images/s)", who, done, len(mine), rate)
        flush()
        return failed

    def _summary(
        self,
        existing: _Existing,
        remaining: list[ImageRecord],
        by_key: dict[Key, Any],
        attempt: int,
    ) -> EmbedSummary:
        failed = self.work.read_skipped(attempt)
        failed_paths = {f["path"] for f in failed}
        new = sum(str(r.path) not in failed_paths for r in remaining)
        old = existing.output_keys + existing.part_keys
        reused = sum(k in by_key for k in old)
        skipped = self.listed_skips + failed
        metadata = {
            **self.embedder.metadata(),
            "roots": self.roots,
            "skipped": skipped,
            "count": reused + new,
        }
        previous = read_metadata(self.out) if existing.output_keys else None
        up_to_date = (
            previous is not None
            and new == 0
            and not existing.part_keys
            and reused == len(existing.output_keys)
            and previous.get("skipped") == skipped
        )
        return EmbedSummary(
            out=self.out,
            total=reused + new,
            new=new,
            reused=reused,
            dropped=len(old) - reused,
            skipped=skipped,
            skipped_file=self.out.with_name(f"{self.out.stem}.skipped.tsv") if skipped else None,
            up_to_date=up_to_date,
            metadata=metadata,
        )

    def _merge(
        self, summary: EmbedSummary, existing: _Existing, by_key: dict[Key, ImageRecord]
    ) -> None:
        if summary.up_to_date:
            logger.info("%s already holds every image: nothing to write", self.out)
            self.work.remove()
            return
        roots = self.roots
        classes = sorted({r.label for r in self.records if r.label is not None})

        def keep(table: Any) -> Any:
            """Rows whose image is still listed, relabelled from the listing."""
            import pyarrow as pa

            paths, idx = table.column("path").to_pylist(), table.column("root").to_pylist()
            found = [by_key.get((roots[r], p)) for p, r in zip(paths, idx, strict=True)]
            mask = pa.array([f is not None for f in found])
            labels = pa.array([f.label for f in found if f is not None], type=pa.string())
            table = table.filter(mask)
            return table.set_column(table.schema.get_field_index("label"), "label", labels)

        def tables() -> Iterator[Any]:
            import pyarrow.parquet as pq

            if existing.output_keys:
                yield from (keep(t) for t in iter_tables(self.out))
            for part in self.work.parts():
                yield keep(pq.read_table(part))

        write_output(
            self.out, tables, total=summary.total, metadata=summary.metadata, classes=classes
        )
        write_skipped(self.out, summary.skipped)
        self.work.remove()
        logger.info("wrote %s (%d images)", self.out, summary.total)
