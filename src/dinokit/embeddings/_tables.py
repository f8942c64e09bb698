"""Rows of embeddings as Arrow tables: the one in-memory layout of files, parts and merges.

Columns ``path`` (string), ``label`` (string, null when unlabelled), ``embedding``
(fixed-size list of float32) and ``root`` (int16 index into ``metadata["roots"]``); with patch
tokens also ``patch_tokens`` (flattened (h*w, D) float32) and ``grid`` (h, w). The metadata is
compact JSON under the schema key ``dinokit``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

METADATA_KEY = b"dinokit"
"""Schema metadata key of a dinokit Parquet embeddings file."""


def metadata_json(metadata: dict[str, Any]) -> bytes:
    """Metadata as compact UTF-8 JSON (sorted keys, so equal metadata gives equal bytes)."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()


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
    meta = None if metadata is None else {METADATA_KEY: metadata_json(metadata)}
    return pa.schema(fields, metadata=meta)


def make_table(
    paths: Sequence[str],
    labels: Sequence[str | None],
    vectors: NDArray[np.float32],
    roots: Sequence[int] | NDArray[np.integer[Any]],
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
    """The (N, D) float32 ``embedding`` column of a table, as a new writable array (D from
    the column's type, so N may be 0)."""
    column = table.column("embedding")
    width = getattr(column.type, "list_size", -1)
    parts = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return np.asarray(values, dtype=np.float32).reshape(len(table), width)
