"""Top-k cosine search in an embeddings file, by image or by an indexed path.

A query image is embedded exactly as the indexed images were: the model, branch,
preprocessing, feature and normalisation recorded in the file's metadata
(:meth:`dinokit.embed.Embedder.from_metadata`, offline).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..embed import Embedder
from ..embeddings import Embeddings
from .cache import index_for_file
from .index import DEFAULT_EF_SEARCH, DEFAULT_NPROBE, VectorIndex, build_index

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Neighbour:
    """One search hit.

    Attributes:
        rank: 1 for the most similar.
        score: Cosine similarity to the query.
        row: Row of the hit in the embeddings.
        path: The hit's stored (relative) path.
        label: The hit's label, or ``None``.
    """

    rank: int
    score: float
    row: int
    path: str
    label: str | None


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query.

    Attributes:
        query: The query image file or indexed path, as given.
        neighbours: Best first.
    """

    query: str
    neighbours: list[Neighbour]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"query": self.query, "neighbours": [asdict(n) for n in self.neighbours]}


def _as_list(value: str | Path | Sequence[str | Path] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [str(value)]
    return [str(v) for v in value]


def recorded_embedder(embeddings: Embeddings, **options: Any) -> Embedder:
    """The embedder recorded in ``embeddings.metadata`` (offline), checked against their width.

    Args:
        embeddings: Embeddings made by ``dinokit embed``.
        options: ``batch_size``, ``precision``, ``device``... of
            :meth:`~dinokit.embed.Embedder.from_metadata`.

    Raises:
        RecordedModelError: The recorded model cannot be loaded (raised by the embedder).
        ValueError: The model's vectors are not as wide as the embeddings.
    """
    embedder = Embedder.from_metadata(embeddings.metadata, **options)
    if embedder.dim != embeddings.dim:
        raise ValueError(
            f"the recorded model makes {embedder.dim}-d vectors but the embeddings have "
            f"{embeddings.dim} dimensions; re-embed the images with dinokit embed"
        )
    return embedder


def embed_query_images(embeddings: Embeddings, images: Sequence[str | Path]) -> NDArray[np.float32]:
    """Embed image files with the model and options recorded in ``embeddings.metadata``.

    Args:
        embeddings: The indexed embeddings (their metadata holds the model record).
        images: Query image files.

    Returns:
        (Q, D) float32 query vectors, in the order of ``images``.

    Raises:
        FileNotFoundError: A query image does not exist.
        ValueError: A query image cannot be read, or the model's width differs from the file's.
        RecordedModelError: The recorded model cannot be loaded (raised by the embedder).
    """
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such query image")
    vectors, failed = recorded_embedder(embeddings).embed_files([Path(p) for p in images])
    if failed:
        first = failed[0]
        raise ValueError(f"{first.path}: cannot read the query image ({first.reason})")
    return np.asarray(vectors, dtype=np.float32)


def neighbours_of(
    paths: Sequence[str],
    labels: Sequence[str | None],
    scores: NDArray[np.float32],
    ids: NDArray[np.int64],
) -> list[Neighbour]:
    """The hits of one query from one row of :meth:`VectorIndex.search`'s output.

    Args:
        paths: (N,) stored path of every indexed row.
        labels: (N,) label of every indexed row.
        scores: (k,) scores of the query, best first.
        ids: (k,) row ids (``-1`` pads, left out).
    """
    out: list[Neighbour] = []
    for score, row in zip(scores.tolist(), ids.tolist(), strict=True):
        if row >= 0:
            out.append(Neighbour(len(out) + 1, float(score), int(row), paths[row], labels[row]))
    return out


def search(
    embeddings: str | Path | Embeddings,
    query: str | Path | Sequence[str | Path] | None = None,
    *,
    query_path: str | Path | Sequence[str | Path] | None = None,
    query_vectors: NDArray[np.floating] | None = None,
    k: int = 10,
    index: str = "auto",
    nprobe: int = DEFAULT_NPROBE,
    ef_search: int = DEFAULT_EF_SEARCH,
    cache: bool = True,
) -> list[SearchResult]:
    """The ``k`` most similar images of each query (cosine similarity).

    Args:
        embeddings: An embeddings file (its index is cached next to it) or an
            :class:`~dinokit.embed.Embeddings` (indexed in memory).
        query: Image file(s), embedded with the model recorded in the embeddings.
        query_path: Path(s) of already indexed images (stored relative path or file path);
            the image itself is left out of its own results.
        query_vectors: (Q, D) vectors to search with directly.
        k: Hits per query.
        index: ``auto`` (exact up to :data:`~dinokit.search.vectors.EXACT_LIMIT` images, IVF
            above), ``exact``, ``ivf`` or ``hnsw``.
        nprobe: IVF lists scanned per query (more: slower, higher recall).
        ef_search: HNSW candidate list size per query.
        cache: Keep the index next to the embeddings file.

    Returns:
        One :class:`SearchResult` per query, in the order: ``query`` images, ``query_path``
        entries, ``query_vectors`` rows.

    Example:
        >>> for hit in dinokit.search("shop.parquet", "new.jpg", k=5)[0].neighbours:
        ...     print(hit.rank, f"{hit.score:.3f}", hit.path)
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    images, indexed = _as_list(query), _as_list(query_path)
    if not images and not indexed and query_vectors is None:
        raise ValueError("nothing to search for: give query images, query paths or vectors")
    emb, vindex, source = _open_index(embeddings, index, nprobe, ef_search, cache)
    names, queries, own_rows = _gather_queries(emb, source, images, indexed, query_vectors)
    scores, ids = vindex.search(queries, min(k, len(emb)), exclude=own_rows)
    return [
        SearchResult(name, neighbours_of(emb.paths, emb.labels, scores[i], ids[i]))
        for i, name in enumerate(names)
    ]


def _open_index(
    embeddings: str | Path | Embeddings, kind: str, nprobe: int, ef_search: int, cache: bool
) -> tuple[Embeddings, VectorIndex, str]:
    """``(embeddings, their index, how errors name them)``; refuses an empty collection."""
    if isinstance(embeddings, Embeddings):
        emb, source = embeddings, "the embeddings"
        vindex = build_index(emb.vectors, kind, nprobe=nprobe, ef_search=ef_search)
    else:
        emb, vindex = index_for_file(
            embeddings, kind=kind, nprobe=nprobe, ef_search=ef_search, cache=cache
        )
        source = str(embeddings)
    if len(emb) == 0:
        raise ValueError(f"{source}: no embeddings to search")
    return emb, vindex, source


def _gather_queries(
    emb: Embeddings,
    source: str,
    images: list[str],
    indexed: list[str],
    query_vectors: NDArray[np.floating] | None,
) -> tuple[list[str], NDArray[np.float32], NDArray[np.int64]]:
    """``(names, (Q, D) vectors, (Q,) own rows)``: images, then indexed paths, then vectors;
    an indexed path's own row is left out of its results (-1 for the others)."""
    names: list[str] = []
    blocks: list[NDArray[np.float32]] = []
    own_rows: list[int] = []
    if images:
        blocks.append(embed_query_images(emb, images))
        names += images
        own_rows += [-1] * len(images)
    for entry in indexed:
        try:
            row = emb.index_of(entry)
        except KeyError as exc:
            raise ValueError(
                f"{source}: {exc.args[0]}; use --query for images not indexed"
            ) from exc
        blocks.append(emb.vectors[row : row + 1])
        names.append(entry)
        own_rows.append(row)
    if query_vectors is not None:
        q = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
        if q.shape[1] != emb.dim:
            raise ValueError(
                f"{source}: query vectors have {q.shape[1]} dimensions, the embeddings {emb.dim}"
            )
        blocks.append(q)
        names += [f"vector {i}" for i in range(q.shape[0])]
        own_rows += [-1] * q.shape[0]
    return names, np.concatenate(blocks), np.asarray(own_rows, dtype=np.int64)
