"""Rows of embeddings as Arrow tables: the one in-flight layout of parts, old outputs and
merges (columns ``path``, ``label``, ``embedding``, ``root``, and with patch tokens
``patch_tokens`` (flattened (h*w, D) float32) and ``grid`` (h, w)).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._formats import sidecar
from .embeddings import METADATA_KEY, Embeddings, EmbeddingsFileError

_CHUNK_ROWS = 4096


def schema(dim: int, *, patch_tokens: bool, metadata: dict[str, Any] | None = None) -> Any:
    """The ``pyarrow.Schema`` of embeddings rows of width ``dim``."""
    import pyarrow as pa

    fields = [
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("embedding", pa.list_(pa.float32(), dim)),
        pa.field("root", pa.int16()),
    ]
    if patch_tokens:
        fields += [
            pa.field("patch_tokens", pa.list_(pa.float32())),
            pa.field("grid", pa.list_(pa.int16(), 2)),
        ]
    meta = None
    if metadata is not None:
        meta = {METADATA_KEY: json.dumps(metadata, sort_keys=True, separators=(",", ":"))}
    return pa.schema(fields, metadata=meta)


def make_table(
    paths: Sequence[str],
    labels: Sequence[str | None],
    vectors: NDArray[np.float32],
    roots: Sequence[int],
    *,
    patch_tokens: Sequence[NDArray[np.float32]] | None = None,
    grids: Sequence[tuple[int, int]] | None = None,
) -> Any:
    """A ``pyarrow.Table`` of rows: (N,) paths, labels, roots and (N, D) vectors."""
    import pyarrow as pa

    dim = int(vectors.shape[1])
    columns: dict[str, Any] = {
        "path": pa.array(list(paths), type=pa.string()),
        "label": pa.array(list(labels), type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)), dim
        ),
        "root": pa.array(np.asarray(roots, dtype=np.int16)),
    }
    if patch_tokens is not None and grids is not None:
        columns["patch_tokens"] = pa.array(
            [t.reshape(-1) for t in patch_tokens], type=pa.list_(pa.float32())
        )
        columns["grid"] = pa.array([list(g) for g in grids], type=pa.list_(pa.int16(), 2))
    return pa.table(columns, schema=schema(dim, patch_tokens=patch_tokens is not None))


def vectors_of(table: Any) -> NDArray[np.float32]:
    """The (N, D) float32 ``embedding`` column of a table."""
    column = table.column("embedding").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(len(table), -1)


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of an embeddings file (any format), ``None`` when it has none."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
            return json.loads(raw) if raw else None
        meta = sidecar(path, "meta.json")
        return json.loads(meta.read_text()) if meta.is_file() else None
    except Exception as exc:  # pyarrow and json raise many types for damaged files
        raise EmbeddingsFileError(
            f"{path}: exists but is not a readable embeddings file ({exc}); "
            "pass --overwrite to replace it"
        ) from None


def iter_tables(path: Path) -> Iterator[Any]:
    """An embeddings file of any format as row tables of at most a few thousand rows.

    Parquet and ``.npy`` are streamed (memory stays flat); lightly's CSV is read whole.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as handle:
            for batch in handle.iter_batches(batch_size=_CHUNK_ROWS):
                yield pa.Table.from_batches([batch])
        return
    if suffix == ".npy":
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        paths_file = sidecar(path, "paths.tsv")
        if not paths_file.is_file():
            raise EmbeddingsFileError(
                f"{path}: its paths file {paths_file.name} is missing; keep it next to the .npy"
            )
        rows = [line.split("\t") for line in paths_file.read_text().splitlines()]
    else:
        emb = Embeddings.load(path)
        vectors = emb.vectors
        assert emb.roots is not None
        rows = [
            [p, lab or "", str(int(r))]
            for p, lab, r in zip(emb.paths, emb.labels, emb.roots, strict=True)
        ]
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        yield make_table(
            [r[0] for r in chunk],
            [r[1] or None for r in chunk],
            np.asarray(vectors[start : start + len(chunk)], dtype=np.float32),
            [int(r[2]) for r in chunk],
        )
