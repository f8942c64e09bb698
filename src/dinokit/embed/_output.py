"""Writing the merged output of an ``embed`` run from a stream of row tables.

Memory stays flat: Parquet row groups are written as they come, ``.npy`` vectors go into a
memory-mapped file, CSV rows are written one by one. Every file is written under a
temporary name and renamed into place.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path
from ._formats import sidecar
from ._rows import schema, vectors_of
from .embeddings import metadata_json


def write_output(
    out: Path,
    tables: Callable[[], Iterable[Any]],
    *,
    total: int,
    metadata: dict[str, Any],
    classes: list[str],
) -> None:
    """Write the rows of ``tables()`` to ``out`` in the format its suffix names.

    Args:
        out: ``.parquet``, ``.npy`` (+ ``.paths.tsv`` and ``.meta.json``) or ``.csv``
            (lightly's layout, + ``.meta.json``).
        tables: Makes the stream of row tables (see :mod:`._rows`), called once.
        total: Number of rows the stream holds (the ``.npy`` file is sized up front).
        metadata: The recipe, roots and skipped images.
        classes: Sorted label names (CSV labels are their indices).
    """
    suffix = out.suffix.lower()
    dim = int(metadata["dim"])
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        target = schema(dim, patch_tokens=bool(metadata.get("patch_tokens")), metadata=metadata)
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, target) as writer:
            for table in tables():
                writer.write_table(table.select(target.names).cast(target))
        return
    if suffix == ".npy":
        with atomic_path(sidecar(out, "paths.tsv")) as tmp_paths, atomic_path(out) as tmp_npy:
            matrix = np.lib.format.open_memmap(
                tmp_npy, mode="w+", dtype=np.float32, shape=(total, dim)
            )
            start = 0
            with tmp_paths.open("w") as paths:
                for table in tables():
                    matrix[start : start + len(table)] = vectors_of(table)
                    start += len(table)
                    columns = [table.column(c).to_pylist() for c in ("path", "label", "root")]
                    rows = zip(*columns, strict=True)
                    paths.writelines(f"{p}\t{lab or ''}\t{r}\n" for p, lab, r in rows)
            matrix.flush()
            del matrix
            if start != total:
                raise RuntimeError(f"{out}: expected {total} rows, merged {start}")
        _write_meta(out, metadata)
        return
    index = {name: i for i, name in enumerate(classes)}
    with atomic_path(out) as tmp, tmp.open("w", newline="") as handle:
        writer_csv = csv.writer(handle)
        writer_csv.writerow(["filenames", *(f"embedding_{i}" for i in range(dim)), "labels"])
        for table in tables():
            names, labels = table.column("path").to_pylist(), table.column("label").to_pylist()
            for name, label, vector in zip(names, labels, vectors_of(table), strict=True):
                # lightly's CSV holds integer labels; unlabelled rows get 0 as lightly's do.
                code = index[label] if label is not None else 0
                writer_csv.writerow([name, *(repr(float(v)) for v in vector), code])
    _write_meta(out, {**metadata, "classes": classes})


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
