"""FAISS inner-product indexes over L2-normalised embeddings (cosine similarity).

Three kinds (Johnson, Douze & Jégou, 2019, "Billion-scale similarity search with GPUs"):

- ``exact``: ``IndexFlatIP`` holds the vectors, searched by
  :func:`~dinokit.search.vectors.neighbours`; the reference every other kind is measured
  against.
- ``ivf``: ``IndexIVFFlat`` with ``nlist ~ 4 sqrt(N)`` inverted lists trained by k-means on a
  sample; a query scans the ``nprobe`` closest lists.
- ``hnsw``: ``IndexHNSWFlat`` (Malkov & Yashunin, 2018), a navigable small-world graph.

``auto`` is exact up to :data:`EXACT_LIMIT` vectors and IVF above it; the recall@10 of the
approximate kinds against exact search is measured by ``benchmarks/scale.py``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .vectors import EXACT_LIMIT, drop_excluded, neighbours, sample_rows, unit_rows

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("auto", "exact", "ivf", "hnsw")
"""Index kinds :func:`build_index` understands."""

IVF_TRAIN_PER_LIST = 64
"""Training points per inverted list (k-means sample size = ``nlist * IVF_TRAIN_PER_LIST``)."""

DEFAULT_NPROBE = 32
"""Inverted lists scanned per query (IVF)."""

HNSW_NEIGHBOURS = 32
"""Graph degree ``M`` of HNSW."""

HNSW_EF_CONSTRUCTION = 80
"""Candidate list size while building HNSW."""

DEFAULT_EF_SEARCH = 128
"""Candidate list size while searching HNSW."""


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # a declared dependency, but keep the message actionable
        raise RuntimeError("search needs FAISS: pip install faiss-cpu") from exc
    return faiss


@dataclass(frozen=True)
class IndexSpec:
    """How an index is built and searched.

    Attributes:
        kind: ``exact``, ``ivf`` or ``hnsw`` (resolved; never ``auto``).
        nlist: Inverted lists (IVF only; 0 otherwise).
        nprobe: Lists scanned per query (IVF only).
        ef_search: Candidate list size per query (HNSW only).
        seed: Seed of the IVF k-means and its training sample.
    """

    kind: str
    nlist: int = 0
    nprobe: int = DEFAULT_NPROBE
    ef_search: int = DEFAULT_EF_SEARCH
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return asdict(self)


def resolve_spec(
    n: int,
    kind: str = "auto",
    *,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    ef_search: int = DEFAULT_EF_SEARCH,
    seed: int = 0,
) -> IndexSpec:
    """The concrete index for ``n`` vectors.

    Args:
        n: Number of vectors.
        kind: One of :data:`KINDS`.
        nlist: IVF lists (default ``4 sqrt(n)``, at least 1, at most ``n // 39``).
        nprobe: IVF lists scanned per query.
        ef_search: HNSW candidate list size.
        seed: IVF k-means seed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "exact" if n <= EXACT_LIMIT else "ivf"
    if kind != "ivf":
        return IndexSpec(kind=kind, nprobe=nprobe, ef_search=ef_search, seed=seed)
    if nlist is None:
        # FAISS warns below 39 training points per centroid: keep at least that many.
        nlist = max(1, min(round(4 * math.sqrt(n)), n // 39))
    if nlist < 1:
        raise ValueError(f"nlist must be >= 1, got {nlist}")
    return IndexSpec(
        kind="ivf", nlist=nlist, nprobe=min(nprobe, nlist), ef_search=ef_search, seed=seed
    )


class VectorIndex:
    """A FAISS index over unit vectors with the spec that built it.

    Args:
        index: The FAISS index (inner product).
        spec: How it was built.
    """

    def __init__(self, index: Any, spec: IndexSpec) -> None:
        self.index = index
        self.spec = spec
        self.apply_search_params()

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Vector width D."""
        return int(self.index.d)

    def apply_search_params(self) -> None:
        """Set ``nprobe`` / ``efSearch`` from the spec on the FAISS index."""
        if self.spec.kind == "ivf":
            self.index.nprobe = self.spec.nprobe
        elif self.spec.kind == "hnsw":
            self.index.hnsw.efSearch = self.spec.ef_search

    def vectors(self) -> NDArray[np.float32]:
        """(N, D) the unit vectors of an ``exact`` index (a view of FAISS's storage, no copy)."""
        if self.spec.kind != "exact":
            raise ValueError(f"a {self.spec.kind} index does not keep its vectors in order")
        if self.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        stored = import_faiss().rev_swig_ptr(self.index.get_xb(), self.ntotal * self.dim)
        return np.asarray(stored).reshape(self.ntotal, self.dim)

    def search(
        self, queries: NDArray[np.floating], k: int, *, exclude: NDArray[np.integer] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The ``k`` most similar indexed vectors of each query.

        Args:
            queries: (Q, D) query vectors (L2-normalised here).
            k: Neighbours per query.
            exclude: (Q,) the indexed row each query is, left out of its own results, or -1
                (see :func:`~dinokit.search.vectors.drop_excluded`).

        Returns:
            ``(scores, ids)``: (Q, k) cosine similarities, best first, and (Q, k) row ids;
            ``-1`` ids (score ``-inf``) pad rows with fewer than ``k`` results.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = unit_rows(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise ValueError(
                f"query vectors have {q.shape[1]} dimensions but the index has {self.dim}; "
                "embed the queries with the model that made the index"
            )
        if self.spec.kind == "exact":
            return neighbours(q, self.vectors(), k, exclude=exclude)
        scores, ids = self.index.search(q, k if exclude is None else k + 1)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        ids = ids.astype(np.int64)
        return (scores, ids) if exclude is None else drop_excluded(scores, ids, exclude)


def build_index(
    vectors: NDArray[np.floating],
    kind: str = "auto",
    *,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    ef_search: int = DEFAULT_EF_SEARCH,
    seed: int = 0,
) -> VectorIndex:
    """An inner-product index over the rows of ``vectors`` (L2-normalised first).

    Args:
        vectors: (N, D) embeddings; rows are L2-normalised if they are not already.
        kind: ``auto``, ``exact``, ``ivf`` or ``hnsw`` (see the module docstring).
        nlist: IVF lists (default ``4 sqrt(N)``).
        nprobe: IVF lists scanned per query.
        ef_search: HNSW candidate list size per query.
        seed: Seed of the IVF training sample and k-means.

    Returns:
        The index; row ``i`` of ``vectors`` has id ``i``.
    """
    faiss = import_faiss()
    x = unit_rows(vectors)
    n, dim = x.shape
    if n == 0:
        raise ValueError("cannot index an empty set of embeddings")
    spec = resolve_spec(n, kind, nlist=nlist, nprobe=nprobe, ef_search=ef_search, seed=seed)
    logger.debug("building a %s index over %d x %d vectors", spec.kind, n, dim)
    if spec.kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, spec.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(sample_rows(x, spec.nlist * IVF_TRAIN_PER_LIST, seed))
    index.add(x)
    return VectorIndex(index, spec)


def recall_at_k(approx_ids: NDArray[np.integer[Any]], exact_ids: NDArray[np.integer[Any]]) -> float:
    """Fraction of the exact top-k found by the approximate top-k (both (Q, k))."""
    if approx_ids.shape != exact_ids.shape:
        raise ValueError(f"shapes differ: {approx_ids.shape} vs {exact_ids.shape}")
    found = sum(
        len(set(a.tolist()) & set(e.tolist()) - {-1})
        for a, e in zip(approx_ids, exact_ids, strict=True)
    )
    total = int((exact_ids >= 0).sum())
    return found / total if total else 1.0
