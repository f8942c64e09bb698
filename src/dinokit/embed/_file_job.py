"""An ``embed`` run that writes a file: plan, embed in parts, merge (see
:mod:`dinokit.embed.pipeline`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import ImageRecord
from ..embeddings import WorkDir, read_metadata, read_tables, write_skipped, write_tables
from ..runtime.distributed import ProcessInfo, barrier
from ._inputs import Key, embed_shard, key, roots_of, shard
from .config import EmbedConfig, EmbedSummary
from .embedder import RECIPE_KEYS, Embedder

logger = logging.getLogger(__name__)

_READ_ROWS = 4096
"""Rows per table when an existing output is read back (memory stays flat)."""


@dataclass
class _Existing:
    """Rows already embedded with the same recipe: in the output, in an interrupted run."""

    output_keys: list[Key]
    part_keys: list[Key]
    resume: bool


class FileJob:
    """One run that writes ``config.out`` (see the module docstring for the steps)."""

    def __init__(
        self,
        config: EmbedConfig,
        embedder: Embedder,
        records: list[ImageRecord],
        listed_skips: list[dict[str, str]],
        process: ProcessInfo,
    ) -> None:
        assert config.out is not None
        self.config = config
        self.out = Path(config.out).expanduser()
        self.embedder = embedder
        self.records = records
        self.listed_skips = listed_skips
        self.process = process
        self.work = WorkDir.of(self.out)
        meta = embedder.metadata()
        self.recipe = {k: meta[k] for k in RECIPE_KEYS}
        self.roots = roots_of(records)

    def run(self) -> EmbedSummary:
        """Plan, embed this rank's shard, merge on rank 0."""
        existing = self._plan()
        by_key = {key(r): r for r in self.records}
        done = set(existing.output_keys) | set(existing.part_keys)
        remaining = [r for r in self.records if key(r) not in done]
        attempt = self.work.next_attempt() if existing.resume else 1
        barrier()  # every rank has read the old state before rank 0 changes it
        if self.process.is_main and not existing.resume:
            self.work.reset({"recipe": self.recipe, "roots": self.roots})
        barrier()
        failed: list[dict[str, str]] = []  # this rank's share, in parts of <= chunk_rows rows
        mine = shard(remaining, self.process)
        parts = embed_shard(self.embedder, mine, self.roots, self.config, self.process, failed)
        for seq, table in enumerate(parts):
            self.work.write_part(attempt, self.process.rank, seq, table)
        self.work.write_skipped(attempt, self.process.rank, failed)
        barrier()
        summary = self._summary(existing, remaining, by_key, attempt)
        if self.process.is_main:
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
            output_keys = self._keys_of(read_tables(self.out, chunk_rows=_READ_ROWS), old_roots)
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
        part_keys = self._keys_of(self.work.part_tables(["path", "root"]), self.roots)
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
        metadata = self.embedder.metadata()
        metadata.update(roots=self.roots, skipped=skipped, count=reused + new)
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
            if existing.output_keys:
                yield from (keep(t) for t in read_tables(self.out, chunk_rows=_READ_ROWS))
            yield from (keep(t) for t in self.work.part_tables())

        write_tables(
            self.out, tables(), total=summary.total, metadata=summary.metadata, classes=classes
        )
        write_skipped(self.out, summary.skipped)
        self.work.remove()
        logger.info("wrote %s (%d images)", self.out, summary.total)
