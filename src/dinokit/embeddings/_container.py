"""The embeddings container: one vector per image with its path, label and recipe (its
files are those of :mod:`._formats`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._formats import check_format, read_metadata, read_tables, write_tables
from ._tables import make_table, vectors_of


@dataclass
class Embeddings:
    """Image embeddings with their paths, labels and the recipe that made them.

    Attributes:
        paths: (N,) image paths relative to their input root, POSIX style.
        labels: (N,) class names (the labelled folder's subfolder) or ``None``.
        vectors: (N, D) float32 matrix; rows are L2-normalised unless
            ``metadata["normalize"]`` is false.
        metadata: How the vectors were made: ``model`` (the record that reloads the
            backbone offline), ``fingerprint``, ``preprocess`` (mode), ``size``,
            ``transform`` (every preprocessing setting), ``feature``, ``branch``,
            ``normalize``, ``patch_tokens``, ``dim``, ``precision``, ``roots`` (absolute
            input roots), ``skipped`` (``[{"path", "reason"}]``) and ``count``.
            :meth:`dinokit.embed.Embedder.from_metadata` rebuilds the embedder from it.
        roots: (N,) index of each image's input root in ``metadata["roots"]``.
    """

    paths: list[str]
    labels: list[str | None]
    vectors: NDArray[np.float32]
    metadata: dict[str, Any] = field(default_factory=dict)
    roots: NDArray[np.int16] | None = None

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, D), got shape {self.vectors.shape}")
        n = self.vectors.shape[0]
        if len(self.paths) != n or len(self.labels) != n:
            raise ValueError(
                f"{len(self.paths)} paths and {len(self.labels)} labels for {n} vectors"
            )
        if self.roots is None:
            self.roots = np.zeros(n, dtype=np.int16)
        self.roots = np.asarray(self.roots, dtype=np.int16)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Vector width D."""
        return int(self.vectors.shape[1])

    @property
    def labelled(self) -> bool:
        """Whether at least one image has a label."""
        return any(label is not None for label in self.labels)

    def absolute_path(self, index: int) -> Path:
        """The image file of row ``index`` (its input root joined with its path)."""
        roots = self.metadata.get("roots") or []
        assert self.roots is not None
        root_index = int(self.roots[index])
        if root_index < len(roots):
            return Path(roots[root_index]) / self.paths[index]
        return Path(self.paths[index])

    def absolute_paths(self) -> list[Path]:
        """The image file of every row, in order."""
        return [self.absolute_path(i) for i in range(len(self))]

    def index_of(self, path: str | Path) -> int:
        """Row of an image given by its stored relative path or by its file path.

        Raises:
            KeyError: No row has that path.
        """
        text = Path(path).as_posix()
        for i, stored in enumerate(self.paths):
            if stored == text:
                return i
        target = Path(path).expanduser().absolute()
        for i in range(len(self)):
            if self.absolute_path(i) == target:
                return i
        raise KeyError(f"{path}: not in these embeddings ({len(self)} images)")

    def subset(self, rows: NDArray[np.integer[Any]] | list[int]) -> Embeddings:
        """A new :class:`Embeddings` with only the given rows (same metadata)."""
        idx = np.asarray(rows, dtype=np.int64)
        assert self.roots is not None
        return Embeddings(
            paths=[self.paths[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            vectors=self.vectors[idx],
            metadata=dict(self.metadata),
            roots=self.roots[idx],
        )

    @classmethod
    def load(cls, path: str | Path) -> Embeddings:
        """Read an embeddings file written by :meth:`save` (or ``dinokit embed``).

        Raises:
            FileNotFoundError: The file does not exist.
            EmbeddingsFileError: The file is not an embeddings file this version reads.
        """
        path = Path(path)
        table = next(read_tables(path))
        metadata = read_metadata(path) or {}
        metadata.pop("classes", None)  # lightly's CSV: already turned back into labels
        return cls.from_table(table, metadata)

    @classmethod
    def from_table(cls, table: Any, metadata: dict[str, Any]) -> Embeddings:
        """The rows of a row table (see :func:`~dinokit.embeddings.make_table`)."""
        return cls(
            paths=table.column("path").to_pylist(),
            labels=table.column("label").to_pylist(),
            vectors=vectors_of(table),
            metadata=metadata,
            roots=table.column("root").to_numpy(),
        )

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write to ``.parquet``, ``.npy`` (+ sidecars) or lightly's ``.csv``, atomically.

        Raises:
            FileExistsError: The file exists and ``overwrite`` is false.
            EmbeddingsFileError: An unknown format (nothing is written).
        """
        path = Path(path)
        check_format(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists; pass --overwrite to replace it")
        assert self.roots is not None
        write_tables(
            path,
            [make_table(self.paths, self.labels, self.vectors, self.roots)],
            total=len(self),
            metadata={**self.metadata, "dim": self.dim},
            classes=sorted({label for label in self.labels if label is not None}),
        )
        return path
