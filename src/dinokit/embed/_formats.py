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

from .._files import atomic_write, save_npy
from .embeddings import FORMATS, METADATA_KEY, Embeddings, EmbeddingsFileError, metadata_json


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
    suffix = _suffix(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass --overwrite to replace it")
    if suffix == ".parquet":
        atomic_write(path, lambda tmp: write_parquet(emb, tmp))
    elif suffix == ".npy":
        _write_npy(emb, path)
    else:
        _write_csv(emb, path)
    return path


def arrow_table(emb: Embeddings) -> Any:
    """The Parquet table of ``emb`` (a ``pyarrow.Table`` with the metadata in its schema)."""
    import pyarrow as pa

    assert emb.roots is not None
    flat = pa.array(emb.vectors.reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, emb.dim)
    table = pa.table(
        {
            "path": pa.array(emb.paths, type=pa.string()),
            "label": pa.array(emb.labels, type=pa.string()),
            "embedding": embedding,
            "root": pa.array(emb.roots, type=pa.int16()),
        }
    )
    return table.replace_schema_metadata({METADATA_KEY: metadata_json(emb.metadata)})


def write_parquet(emb: Embeddings, path: Path) -> None:
    """Write ``emb`` as one Parquet file at ``path`` (not atomic; see :func:`atomic_write`)."""
    import pyarrow.parquet as pq

    pq.write_table(arrow_table(emb), path)


def _write_npy(emb: Embeddings, path: Path) -> None:
    assert emb.roots is not None
    save_npy(path, emb.vectors)
    lines = [
        f"{p}\t{'' if lab is None else lab}\t{int(r)}\n"
        for p, lab, r in zip(emb.paths, emb.labels, emb.roots, strict=True)
    ]
    atomic_write(sidecar(path, "paths.tsv"), lambda tmp: tmp.write_text("".join(lines)))
    atomic_write(
        sidecar(path, "meta.json"), lambda tmp: tmp.write_bytes(metadata_json(emb.metadata))
    )


def _write_csv(emb: Embeddings, path: Path) -> None:
    classes = sorted({lab for lab in emb.labels if lab is not None})
    index = {name: i for i, name in enumerate(classes)}

    def dump(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["filenames", *(f"embedding_{i}" for i in range(emb.dim)), "labels"])
            for p, lab, vec in zip(emb.paths, emb.labels, emb.vectors, strict=True):
                # lightly's CSV wants an integer label; unlabelled rows get 0 as lightly does.
                label = index[lab] if lab is not None else 0
                out.writerow([p, *(repr(float(v)) for v in vec), label])

    atomic_write(path, dump)
    meta = {**emb.metadata, "classes": classes}
    atomic_write(sidecar(path, "meta.json"), lambda tmp: tmp.write_bytes(metadata_json(meta)))


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
