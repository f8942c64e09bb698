"""The images a server searches: an embeddings file, its cached FAISS index, and the images
added while serving.

The index is the one ``dinokit search`` uses (:func:`dinokit.search.index_for_file`, cached
next to the file); the rows of :class:`~dinokit.serve.store.AddedStore` are appended to it
when the collection loads and as they are added. Row ids are stable: the file's rows first,
then the added rows in the order they were added.

Files are served only by row id, and only when the file resolves (symbolic links followed)
inside the input root it was indexed under: no request names a file system path.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..search import Neighbour, index_for_file, neighbours_of, unit_rows
from .store import AddedStore

logger = logging.getLogger(__name__)


class UnknownImageError(KeyError):
    """No indexed image has that id or path."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown image"


class Collection:
    """An embeddings file and the images added to it, searchable and growing.

    Args:
        embeddings_file: A file written by ``dinokit embed``.
        index: Index kind (``auto``, ``exact``, ``ivf``, ``hnsw``), as ``dinokit search``.
        cache: Read and write the index cache next to the file.
    """

    def __init__(
        self, embeddings_file: str | Path, *, index: str = "auto", cache: bool = True
    ) -> None:
        self.file = Path(embeddings_file)
        emb, self.index = index_for_file(self.file, kind=index, cache=cache)
        if len(emb) == 0:
            raise ValueError(f"{self.file}: no embeddings to search; embed some images first")
        self.base = emb  # the file's own rows (cluster and duplicate files refer to them)
        self.metadata: dict[str, Any] = dict(emb.metadata)
        self.dim = emb.dim
        self.store = AddedStore(
            self.file, fingerprint=self.metadata.get("fingerprint"), dim=emb.dim
        )
        self.roots = [Path(r) for r in self.metadata.get("roots") or []]
        self.added_root = len(self.roots)
        self.roots.append(self.store.images)
        self._lock = threading.RLock()
        self.paths: list[str] = list(emb.paths)
        self.labels: list[str | None] = list(emb.labels)
        assert emb.roots is not None
        self._root_of: list[int] = emb.roots.astype(int).tolist()
        self._blocks: list[NDArray[np.float32]] = [emb.vectors]
        self._starts: list[int] = [0]
        self._by_path: dict[str, int] = {}
        self._added: dict[str, int] = {}  # added images by their path under store.images
        for row, path in enumerate(self.paths):
            self._by_path.setdefault(path, row)
        self.base_count = len(emb)
        added_paths, added_labels, added_vectors = self.store.load()
        if added_paths:
            self._extend(added_paths, added_labels, added_vectors)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def added_count(self) -> int:
        """Rows added since the embeddings file was written."""
        return len(self) - self.base_count

    def _extend(
        self, paths: list[str], labels: list[str | None], vectors: NDArray[np.float32]
    ) -> list[int]:
        with self._lock:
            first = len(self.paths)
            self.index.index.add(unit_rows(vectors))
            self._starts.append(first)
            self._blocks.append(np.ascontiguousarray(vectors, dtype=np.float32))
            self.paths += paths
            self.labels += labels
            self._root_of += [self.added_root] * len(paths)
            for offset, path in enumerate(paths):
                self._by_path.setdefault(path, first + offset)
                self._added[path] = first + offset
            return list(range(first, first + len(paths)))

    def check_row(self, row: int) -> int:
        """``row`` when it is an image id of the collection.

        Raises:
            UnknownImageError: It is not.
        """
        if not 0 <= row < len(self):
            raise UnknownImageError(f"no image with id {row} (ids are 0..{len(self) - 1})")
        return row

    def row_of(self, path: str) -> int:
        """The id of an indexed image by its stored path, or its file path under a root.

        Raises:
            UnknownImageError: No indexed image has that path.
        """
        text = Path(path).as_posix()
        row = self._by_path.get(text)
        if row is not None:
            return row
        target = Path(path).expanduser()
        for index, root in enumerate(self.roots):
            try:
                relative = target.relative_to(root).as_posix()
            except ValueError:
                continue
            row = self._by_path.get(relative)
            if row is not None and self._root_of[row] == index:
                return row
        raise UnknownImageError(f"{path}: not an indexed image ({len(self)} images)")

    def vector(self, row: int) -> NDArray[np.float32]:
        """The (D,) vector of an image id."""
        self.check_row(row)
        with self._lock:
            block = int(np.searchsorted(self._starts, row, side="right")) - 1
            vector: NDArray[np.float32] = self._blocks[block][row - self._starts[block]]
            return vector

    def info(self, row: int) -> dict[str, Any]:
        """``{"id", "path", "label", "added"}`` of an image id."""
        self.check_row(row)
        return {
            "id": row,
            "path": self.paths[row],
            "label": self.labels[row],
            "added": row >= self.base_count,
        }

    def file_of(self, row: int) -> Path:
        """The image file of an id, checked to lie inside its input root.

        Raises:
            UnknownImageError: Unknown id.
            PermissionError: The stored path leads outside its root.
            FileNotFoundError: The file is gone.
        """
        self.check_row(row)
        root_index = self._root_of[row]
        if root_index >= len(self.roots):
            raise FileNotFoundError(f"image {row}: its input root is not recorded")
        root = self.roots[root_index].resolve()
        file = (root / self.paths[row]).resolve()
        if not file.is_relative_to(root):
            raise PermissionError(f"image {row}: its path leads outside its input root")
        if not file.is_file():
            raise FileNotFoundError(f"image {row}: {self.paths[row]} is no longer on disk")
        return file

    def search(
        self, queries: NDArray[np.floating[Any]], k: int, skips: list[int | None] | None = None
    ) -> list[list[Neighbour]]:
        """The ``k`` most similar images of each query (cosine), best first.

        Args:
            queries: (Q, D) query vectors.
            k: Hits per query.
            skips: Per query, an id left out of its hits (an indexed query itself).

        Returns:
            Q lists of at most ``k`` hits.
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have {q.shape[1]} dimensions, the images {self.dim}")
        if not np.isfinite(q).all() or not np.linalg.norm(q, axis=1).all():
            raise ValueError("query vectors must be finite and non-zero")
        own_rows = np.asarray([-1 if s is None else s for s in skips or [None] * len(q)])
        with self._lock:
            scores, ids = self.index.search(q, min(k, len(self)), exclude=own_rows)
            return [
                neighbours_of(self.paths, self.labels, scores[i], ids[i]) for i in range(len(q))
            ]

    def add(
        self,
        images: list[tuple[bytes, str, str | None]],
        labels: list[str | None],
        vectors: NDArray[np.float32],
    ) -> list[int]:
        """Add embedded images durably and make them searchable.

        Args:
            images: Per image ``(bytes, uploaded name, PIL format)``.
            labels: (M,) labels or ``None``.
            vectors: (M, D) their vectors, made with the collection's model.

        Returns:
            The ids of the images. An image already added under the same name with the same
            bytes keeps its id (a retried add is not duplicated).
        """
        with self._lock:
            paths = [self.store.save_image(data, name, fmt) for data, name, fmt in images]
            fresh: dict[str, int] = {}  # path -> position in this add
            for i, path in enumerate(paths):
                if path not in self._added and path not in fresh:
                    fresh[path] = i
            if fresh:
                chosen = list(fresh.values())
                new_paths = list(fresh)
                new_labels = [labels[i] for i in chosen]
                self.store.append(new_paths, new_labels, vectors[chosen])
                self._extend(new_paths, new_labels, vectors[chosen])
            return [self._added[path] for path in paths]
