"""Reading and writing :class:`~dinokit.embed.embeddings.Embeddings` files.

All writes go to a temporary file in the destination folder and are renamed into place,
so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from .embeddings import FORMATS, METADATA_KEY, Embeddings, EmbeddingsFileError


def sidecar(path: Path, kind: str) -> Path:
    """A sidecar file of an ``.npy``/``.csv`` output: ``emb.npy`` -> ``emb.<kind>``."""
    return path.with_name(f"{path.stem}.{kind}")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise EmbeddingsFileError(
            f"{path}: unknown embeddings format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return suffix


def write(emb: Embeddings, path: Path, *, overwrite: bool) -> Path:
    """Write ``emb`` in the format named by the suffix of ``path``."""
    _suffix(path)  # an unknown format is refused before anything is written
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass --overwrite to replace it")
    # The same writer as ``dinokit embed``, fed with one table of every row.
    from ._output import write_output
    from ._rows import make_table

    assert emb.roots is not None
    roots = emb.roots
    write_output(
        path,
        lambda: [make_table(emb.paths, emb.labels, emb.vectors, roots.tolist())],
        total=len(emb),
        metadata={**emb.metadata, "dim": emb.dim},
        classes=sorted({label for label in emb.labels if label is not None}),
    )
    return path


def read(path: Path) -> Embeddings:
    """Read an embeddings file of any supported format."""
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such embeddings file; create it with dinokit embed")
    try:
        if suffix == ".parquet":
            return _read_parquet(path)
        if suffix == ".npy":
            return _read_npy(path)
        return _read_csv(path)
    except (EmbeddingsFileError, FileNotFoundError):
        raise
    except Exception as exc:  # pyarrow/numpy/csv errors: name the file, say what to do
        raise EmbeddingsFileError(
            f"{path}: not a readable embeddings file ({exc}); re-create it with dinokit embed"
        ) from exc


def _read_parquet(path: Path) -> Embeddings:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = set(table.column_names)
    if not {"path", "embedding"} <= names:
        raise EmbeddingsFileError(
            f"{path}: has no 'path' and 'embedding' columns; is it a dinokit embeddings file?"
        )
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    metadata: dict[str, Any] = json.loads(raw) if raw else {}
    column = table.column("embedding").combine_chunks()
    n = len(table)
    if n == 0:
        dim = int(metadata.get("dim", 0))
        vectors = np.zeros((0, dim), dtype=np.float32)
    else:
        values = column.flatten().to_numpy(zero_copy_only=False)
        vectors = np.asarray(values, dtype=np.float32).reshape(n, -1)
    labels = table.column("label").to_pylist() if "label" in names else [None] * n
    roots = np.asarray(table.column("root").to_numpy(), dtype=np.int16) if "root" in names else None
    return Embeddings(
        paths=table.column("path").to_pylist(),
        labels=labels,
        vectors=vectors,
        metadata=metadata,
        roots=roots,
    )


def _read_meta(path: Path) -> dict[str, Any]:
    meta = sidecar(path, "meta.json")
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _read_npy(path: Path) -> Embeddings:
    vectors = np.load(path, allow_pickle=False)
    paths_file = sidecar(path, "paths.tsv")
    if not paths_file.is_file():
        raise EmbeddingsFileError(
            f"{path}: its paths file {paths_file.name} is missing; keep it next to the .npy"
        )
    paths: list[str] = []
    labels: list[str | None] = []
    roots: list[int] = []
    for line in paths_file.read_text().splitlines():
        p, lab, r = line.split("\t")
        paths.append(p)
        labels.append(lab or None)
        roots.append(int(r))
    return Embeddings(
        paths=paths,
        labels=labels,
        vectors=vectors,
        metadata=_read_meta(path),
        roots=np.asarray(roots, dtype=np.int16),
    )


def _read_csv(path: Path) -> Embeddings:
    metadata = _read_meta(path)
    classes: list[str] = list(metadata.pop("classes", []))
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0][0] != "filenames" or rows[0][-1] != "labels":
        raise EmbeddingsFileError(
            f"{path}: not lightly's embeddings CSV (header filenames,embedding_0,...,labels)"
        )
    body = rows[1:]
    dim = len(rows[0]) - 2
    vectors = np.asarray([[float(v) for v in r[1:-1]] for r in body], dtype=np.float32)
    labels: list[str | None] = [
        classes[int(r[-1])] if classes and int(r[-1]) < len(classes) else None for r in body
    ]
    return Embeddings(
        paths=[r[0] for r in body],
        labels=labels,
        vectors=vectors.reshape(len(body), dim),
        metadata=metadata,
    )
