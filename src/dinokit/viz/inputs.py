"""What the map and the report read and write besides embeddings.

- ``dinokit cluster`` output: ``DIR/assignments.csv`` with columns ``path,cluster,distance``
  (one row per image, ``distance`` to its cluster centre, smaller is closer).
- ``dinokit duplicates`` output: ``groups.csv`` with columns ``group,path,score`` and
  optionally ``kind`` (``identical`` or ``near``), one row per image in a group of
  near-identical images. Other columns (``label``...) are ignored.

Paths in those files are matched to embedding rows by the stored relative path first, then
by the absolute file path. Writes go to a temporary file next to the target, renamed into
place, so a crash never leaves a half-written output under its final name.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..embeddings import Embeddings

logger = logging.getLogger(__name__)

ASSIGNMENTS_FILE = "assignments.csv"
"""The file ``dinokit cluster`` writes in its output folder."""


class MissingDependencyError(RuntimeError):
    """An optional package a requested feature needs is not installed."""


def load_embeddings(source: Embeddings | str | Path) -> Embeddings:
    """An :class:`Embeddings` as given, or read from its file."""
    return source if isinstance(source, Embeddings) else Embeddings.load(source)


def check_output(path: Path, *, overwrite: bool) -> None:
    """Refuse to replace an existing output unless ``overwrite``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass --overwrite to replace it")


def _row_lookup(emb: Embeddings) -> Callable[[str], int | None]:
    """A function from a path in a results file to its embedding row (``None`` if absent)."""
    by_relative = {p: i for i, p in enumerate(emb.paths)}
    by_absolute: dict[str, int] = {}

    def find(text: str) -> int | None:
        row = by_relative.get(Path(text).as_posix())
        if row is not None:
            return row
        if not by_absolute:
            by_absolute.update({str(emb.absolute_path(i)): i for i in range(len(emb))})
        return by_absolute.get(str(Path(text).expanduser().absolute()))

    return find


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: not a {what} file (columns {', '.join(columns)} expected, "
                f"{', '.join(missing)} missing)"
            )
        return list(reader)


@dataclass
class Clusters:
    """Cluster assignments aligned with embedding rows.

    Attributes:
        ids: (N,) cluster id per row, -1 where the file has no row for the image.
        distances: (N,) distance to the cluster centre, NaN where unknown.
        source: The file they were read from, if any.
    """

    ids: NDArray[np.int64]
    distances: NDArray[np.float64]
    source: Path | None = None

    @property
    def assigned(self) -> int:
        """How many rows have a cluster."""
        return int((self.ids >= 0).sum())

    def members(self, cluster: int) -> NDArray[np.int64]:
        """Rows of ``cluster``, closest to its centre first (ties by row)."""
        rows = np.flatnonzero(self.ids == cluster)
        dist = np.nan_to_num(self.distances[rows], nan=math.inf)
        return rows[np.lexsort((rows, dist))].astype(np.int64)


def read_clusters(source: str | Path, emb: Embeddings) -> Clusters:
    """Read ``dinokit cluster`` assignments (a folder or its ``assignments.csv``).

    Raises:
        FileNotFoundError: No assignments file there.
        ValueError: The file lacks the ``path``/``cluster`` columns or has a bad value.
    """
    path = Path(source)
    if path.is_dir():
        path = path / ASSIGNMENTS_FILE
    rows = _read_csv(path, ("path", "cluster"), "cluster assignments")
    ids = np.full(len(emb), -1, dtype=np.int64)
    distances = np.full(len(emb), np.nan, dtype=np.float64)
    find = _row_lookup(emb)
    unknown = 0
    for line, row in enumerate(rows, start=2):
        index = find(row["path"])
        if index is None:
            unknown += 1
            continue
        try:
            ids[index] = int(row["cluster"])
            text = (row.get("distance") or "").strip()
            distances[index] = float(text) if text else np.nan
        except ValueError as error:
            raise ValueError(f"{path}:{line}: bad cluster row ({error})") from error
    if unknown:
        logger.warning("%s: %d paths are not in the embeddings; ignored", path, unknown)
    if (ids < 0).any():
        logger.warning("%s: %d images have no cluster", path, int((ids < 0).sum()))
    return Clusters(ids=ids, distances=distances, source=path)


@dataclass
class DuplicateGroup:
    """One group of near-identical images.

    Attributes:
        name: The group id as written in the file.
        kind: ``identical``, ``near`` or empty when the file does not say.
        rows: Embedding rows of the members found in the embeddings, in file order.
        scores: Similarity score per member in ``rows`` (NaN when absent).
        missing: Paths of members that are not in the embeddings.
    """

    name: str
    kind: str = ""
    rows: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Number of members in the file."""
        return len(self.rows) + len(self.missing)


def read_duplicate_groups(source: str | Path, emb: Embeddings) -> list[DuplicateGroup]:
    """Read a ``dinokit duplicates`` groups file, largest groups first.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file lacks the ``group``/``path`` columns.
    """
    path = Path(source)
    rows = _read_csv(path, ("group", "path"), "duplicate groups")
    find = _row_lookup(emb)
    groups: dict[str, DuplicateGroup] = {}
    for row in rows:
        group = groups.setdefault(
            row["group"], DuplicateGroup(name=row["group"], kind=(row.get("kind") or "").strip())
        )
        index = find(row["path"])
        if index is None:
            group.missing.append(row["path"])
            continue
        text = (row.get("score") or "").strip()
        try:
            score = float(text) if text else math.nan
        except ValueError:
            score = math.nan
        group.rows.append(index)
        group.scores.append(score)
    return sorted(groups.values(), key=lambda g: -g.size)
