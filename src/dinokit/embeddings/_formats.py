"""Embeddings files: the one reader and the one writer of every format.

- Parquet (the main format): the row tables of :mod:`._tables`, the metadata in the schema.
- ``.npy``: the (N, D) float32 matrix, with a ``<name>.paths.tsv`` sidecar
  (``path<TAB>label<TAB>root``) and a ``<name>.meta.json`` sidecar.
- ``.csv``: lightly's layout ``filenames,embedding_0,...,embedding_{D-1},labels``; labels
  are integer class indices there (the class names go to ``<name>.meta.json`` as ``classes``).

Both sides work on streams of row tables, so memory stays flat: Parquet is read in batches
and written a row group at a time, ``.npy`` vectors are memory-mapped, CSV rows are written one
by one (lightly's CSV is read whole). Every file is written under a temporary name and renamed
into place, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path
from ._tables import METADATA_KEY, make_table, metadata_json, schema, vectors_of

FORMATS: tuple[str, ...] = (".parquet", ".npy", ".csv")
"""File suffixes of embeddings files."""


class EmbeddingsFileError(ValueError):
    """An embeddings file that cannot be read, with the file and what to do."""


def sidecar(path: Path, kind: str) -> Path:
    """A sidecar file of an ``.npy``/``.csv`` file: ``emb.npy`` -> ``emb.<kind>``."""
    return path.with_name(f"{path.stem}.{kind}")


def check_format(path: str | Path) -> str:
    """The lower-case suffix of an embeddings file name.

    Raises:
        EmbeddingsFileError: The suffix is not one of :data:`FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise EmbeddingsFileError(
            f"{path}: unknown embeddings format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return suffix


def _existing(path: Path) -> str:
    suffix = check_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such embeddings file; create it with dinokit embed")
    return suffix


def _unreadable(path: Path, exc: Exception) -> EmbeddingsFileError:
    return EmbeddingsFileError(
        f"{path}: not a readable embeddings file ({' '.join(str(exc).split())}); "
        "re-create it with dinokit embed --overwrite"
    )


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of an embeddings file (any format), ``None`` when it has none.

    Raises:
        FileNotFoundError: There is no such file.
        EmbeddingsFileError: An unknown format, or a damaged file.
    """
    suffix = _existing(path)
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
        else:
            meta = sidecar(path, "meta.json")
            raw = meta.read_bytes() if meta.is_file() else None
        found: dict[str, Any] | None = json.loads(raw) if raw else None
    except Exception as exc:  # pyarrow and json raise many types for damaged files
        raise _unreadable(path, exc) from exc
    return found


def read_tables(path: Path, *, chunk_rows: int | None = None) -> Iterator[Any]:
    """The rows of an embeddings file (any format) as row tables of :mod:`._tables`.

    Args:
        path: The file.
        chunk_rows: Rows per table; ``None``: one table of every row. Parquet and ``.npy``
            are then streamed (memory stays flat); lightly's CSV is read whole either way.

    Raises:
        FileNotFoundError: There is no such file (raised at once).
        EmbeddingsFileError: An unknown format (at once), or a damaged file (while reading).
    """
    suffix = _existing(path)
    read = {".parquet": _parquet_tables, ".npy": _npy_tables, ".csv": _csv_tables}[suffix]
    return _naming(path, read(path, chunk_rows))


def _naming(path: Path, tables: Iterator[Any]) -> Iterator[Any]:
    """``tables``, with any decoding error turned into one that names the file."""
    try:
        yield from tables
    except EmbeddingsFileError:
        raise
    except Exception as exc:  # pyarrow/numpy/csv errors: name the file, say what to do
        raise _unreadable(path, exc) from exc


def _spans(n: int, chunk_rows: int | None) -> Iterator[slice]:
    step = chunk_rows or max(n, 1)
    for start in range(0, max(n, 1), step):
        yield slice(start, min(start + step, n))


def _parquet_tables(path: Path, chunk_rows: int | None) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    if not {"path", "embedding"} <= names:
        raise EmbeddingsFileError(
            f"{path}: has no 'path' and 'embedding' columns; is it a dinokit embeddings file?"
        )

    def complete(table: Any) -> Any:
        """Files without labels or roots read as unlabelled rows of the first root."""
        n = len(table)
        if "label" not in names:
            table = table.append_column("label", pa.nulls(n, pa.string()))
        if "root" not in names:
            table = table.append_column("root", pa.array(np.zeros(n, dtype=np.int16)))
        return table

    if chunk_rows is None:
        yield complete(pq.read_table(path))
        return
    with pq.ParquetFile(path) as handle:
        for batch in handle.iter_batches(batch_size=chunk_rows):
            yield complete(pa.Table.from_batches([batch]))


def _npy_tables(path: Path, chunk_rows: int | None) -> Iterator[Any]:
    paths_file = sidecar(path, "paths.tsv")
    if not paths_file.is_file():
        raise EmbeddingsFileError(
            f"{path}: its paths file {paths_file.name} is missing; keep it next to the .npy"
        )
    vectors = np.load(path, mmap_mode="r" if chunk_rows else None, allow_pickle=False)
    rows = [line.split("\t") for line in paths_file.read_text().splitlines()]
    if len(rows) != len(vectors):
        raise _unreadable(path, ValueError(f"{len(vectors)} vectors, {len(rows)} paths"))
    for span in _spans(len(rows), chunk_rows):
        chunk = rows[span]
        yield make_table(
            [r[0] for r in chunk],
            [r[1] or None for r in chunk],
            np.asarray(vectors[span], dtype=np.float32),
            [int(r[2]) for r in chunk],
        )


def _csv_tables(path: Path, chunk_rows: int | None) -> Iterator[Any]:
    meta = read_metadata(path) or {}
    classes: list[str] = list(meta.get("classes", []))
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0][0] != "filenames" or rows[0][-1] != "labels":
        raise EmbeddingsFileError(
            f"{path}: not lightly's embeddings CSV (header filenames,embedding_0,...,labels)"
        )
    dim = len(rows[0]) - 2
    body = rows[1:]
    for span in _spans(len(body), chunk_rows):
        chunk = body[span]
        vectors = np.asarray([[float(v) for v in r[1:-1]] for r in chunk], dtype=np.float32)
        labels = [classes[int(r[-1])] if int(r[-1]) < len(classes) else None for r in chunk]
        yield make_table(
            [r[0] for r in chunk], labels, vectors.reshape(len(chunk), dim), [0] * len(chunk)
        )


def write_tables(
    out: Path,
    tables: Iterable[Any],
    *,
    total: int,
    metadata: dict[str, Any],
    classes: list[str],
) -> None:
    """Write a stream of row tables to ``out`` in the format its suffix names.

    Args:
        out: ``.parquet``, ``.npy`` (+ ``.paths.tsv`` and ``.meta.json``) or ``.csv``
            (lightly's layout, + ``.meta.json``).
        tables: Row tables (see :mod:`._tables`), read once.
        total: Number of rows the stream holds (the ``.npy`` file is sized up front).
        metadata: The recipe, roots and skipped images; ``metadata["dim"]`` is the width D.
        classes: Sorted label names (CSV labels are their indices).
    """
    suffix = check_format(out)
    dim = int(metadata["dim"])
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        target = schema(dim, patch_tokens=bool(metadata.get("patch_tokens")), metadata=metadata)
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, target) as writer:
            for table in tables:
                writer.write_table(table.select(target.names).cast(target))
        return
    if suffix == ".npy":
        _write_npy(out, tables, total=total, dim=dim)
        _write_meta(out, metadata)
        return
    index = {name: i for i, name in enumerate(classes)}
    with atomic_path(out) as tmp, tmp.open("w", newline="") as handle:
        writer_csv = csv.writer(handle)
        writer_csv.writerow(["filenames", *(f"embedding_{i}" for i in range(dim)), "labels"])
        for table in tables:
            names, labels = table.column("path").to_pylist(), table.column("label").to_pylist()
            for name, label, vector in zip(names, labels, vectors_of(table), strict=True):
                # lightly's CSV holds integer labels; unlabelled rows get 0 as lightly's do.
                code = index[label] if label is not None else 0
                writer_csv.writerow([name, *(repr(float(v)) for v in vector), code])
    _write_meta(out, {**metadata, "classes": classes})


def _write_npy(out: Path, tables: Iterable[Any], *, total: int, dim: int) -> None:
    with atomic_path(sidecar(out, "paths.tsv")) as tmp_paths, atomic_path(out) as tmp_npy:
        matrix = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.float32, shape=(total, dim))
        start = 0
        with tmp_paths.open("w") as paths:
            for table in tables:
                matrix[start : start + len(table)] = vectors_of(table)
                start += len(table)
                columns = [table.column(c).to_pylist() for c in ("path", "label", "root")]
                rows = zip(*columns, strict=True)
                paths.writelines(f"{p}\t{lab or ''}\t{r}\n" for p, lab, r in rows)
        matrix.flush()
        del matrix
        if start != total:
            raise RuntimeError(f"{out}: expected {total} rows, merged {start}")


def _write_meta(out: Path, metadata: dict[str, Any]) -> None:
    with atomic_path(sidecar(out, "meta.json")) as tmp:
        tmp.write_bytes(metadata_json(metadata))


def write_skipped(out: Path, skipped: list[dict[str, str]]) -> Path | None:
    """``<out stem>.skipped.tsv`` (``path<TAB>reason``) next to ``out``; removed when empty.

    Returns:
        The file, or ``None`` when nothing was skipped.
    """
    path = out.with_name(f"{out.stem}.skipped.tsv")
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    lines = ["path\treason\n"] + [
        f"{s['path']}\t{' '.join(s['reason'].split())}\n" for s in skipped
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))
    return path
