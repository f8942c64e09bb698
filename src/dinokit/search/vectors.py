"""Exact cosine neighbours over embedding matrices, and the helpers on those matrices.

Every exact top-k in dinokit is :func:`neighbours`: the ``exact`` index kind, the duplicates'
k-nearest-neighbour graph, the nearest centroids of k-means, the report's neighbours and the
calibration's most similar other image. Queries are scored one chunk at a time against all
vectors (one matrix product), so memory is bounded by :data:`SCORE_BLOCK`, never N x N.
Equal scores are ordered by row, lower first, so the result does not depend on the chunk.

A query that is itself one of the searched rows is left out of its own results by
:func:`drop_excluded`, the one rule every index kind applies.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

#: Rows whose norm differs from 1 by more than this are re-normalised before cosine search.
NORM_TOLERANCE = 1e-3

EXACT_LIMIT = 100_000
"""Largest collection searched exactly when the index kind is ``auto`` (``dinokit search``,
``serve`` and the duplicates' k-NN graph); above it, IVF. One query costs O(N D) exactly;
the duplicates' graph, N queries, O(N^2 D): at this size about three times an IVF graph at
``nprobe`` 8 (``benchmarks/scale.py``), and it never misses a pair."""

SCORE_BLOCK = 1 << 24
"""Scores held at once: :func:`neighbours` takes ``SCORE_BLOCK // N`` queries at a time
(64 MiB of float32 scores and at most 16 MiB of masks)."""


def unit_rows(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """The rows of ``vectors`` L2-normalised, as a C-contiguous float32 matrix.

    Args:
        vectors: (N, D) matrix.

    Returns:
        (N, D) float32 with unit rows (zero rows stay zero). The input array itself is
        returned when it already is contiguous float32 with unit rows (no copy).
    """
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {out.shape}")
    if out.shape[0] == 0:
        return out
    norms = np.sqrt(np.einsum("nd,nd->n", out, out))  # no (N, D) temporary
    if np.all(np.abs(norms - 1.0) <= NORM_TOLERANCE):
        return out
    return np.ascontiguousarray(out / np.maximum(norms, 1e-12)[:, None], dtype=np.float32)


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` rows covering ``range(n)``."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def sample_rows(x: NDArray[np.float32], size: int, seed: int) -> NDArray[np.float32]:
    """``x`` itself when it has at most ``size`` rows, else ``size`` of them drawn without
    replacement (seeded), in row order."""
    if len(x) <= size:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))]


def neighbours(
    queries: NDArray[np.floating],
    vectors: NDArray[np.floating],
    k: int,
    *,
    exclude: NDArray[np.integer] | None = None,
    chunk: int | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The ``k`` rows of ``vectors`` most cosine-similar to each query, by exact search.

    Args:
        queries: (Q, D) query vectors (L2-normalised here).
        vectors: (N, D) searched vectors (L2-normalised here; not copied when they already
            are float32 unit rows).
        k: Neighbours per query.
        exclude: (Q,) the row of ``vectors`` each query is, left out of its own results
            (:func:`drop_excluded`), or -1 for a query that is not a row. When the queries
            are ``vectors`` themselves, pass ``np.arange(N)``; for rows ``r`` of them,
            ``vectors[r]`` and ``r``.
        chunk: Queries scored at a time (default ``SCORE_BLOCK // N``); the result does not
            depend on it.

    Returns:
        ``(scores, ids)``: (Q, k) float32 cosine similarities, best first (equal scores in row
        order), and (Q, k) int64 rows of ``vectors``. Past the available rows (``k > N``, or
        ``k > N - 1`` with ``exclude``) ids are -1 and scores -inf.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q, x = unit_rows(np.atleast_2d(queries)), unit_rows(vectors)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions, the vectors {x.shape[1]}")
    if exclude is not None:
        return drop_excluded(*neighbours(q, x, k + 1, chunk=chunk), exclude)
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    ids = np.full((len(q), k), -1, dtype=np.int64)
    width = min(k, len(x))
    if width == 0:
        return scores, ids
    size = chunk if chunk is not None else max(1, SCORE_BLOCK // len(x))
    for part in chunks(len(q), size):
        block = q[part] @ x.T  # (B, N) cosine similarities
        block[np.isnan(block)] = -np.inf  # a non-finite vector is nobody's neighbour
        scores[part, :width], ids[part, :width] = top_k(block, width)
    ids[scores == -np.inf] = -1
    return scores, ids


def top_k(scores: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The ``k`` largest entries of each row of (B, N) ``scores`` (no NaN, ``k <= N``), best
    first, equal values in column order: (B, k) values and (B, k) int64 columns."""
    rows, cols = _candidates(scores, k)
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))  # by row, then best first, then column
    starts = np.searchsorted(rows[order], np.arange(len(scores)))
    picked = order[starts[:, None] + np.arange(k)]
    return values[picked], cols[picked]


def _candidates(scores: NDArray[np.float32], k: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(rows, cols)`` of each row's k largest entries, and of all its entries equal to the
    k-th largest where that one is tied (any k of them would be an arbitrary choice)."""
    if k == scores.shape[1]:
        rows, cols = np.nonzero(np.ones(scores.shape, dtype=bool))
        return rows, cols
    # torch selects several times faster than np.argpartition, breaking ties either way.
    top = torch.topk(torch.from_numpy(scores), k + 1, dim=1)
    values, columns = top.values.numpy(), top.indices.numpy()
    tied = values[:, k] == values[:, k - 1]
    clear = np.flatnonzero(~tied)
    redo = np.flatnonzero(tied)
    r, c = np.nonzero(scores[redo] >= values[redo, k - 1 : k])
    rows = np.concatenate([np.repeat(clear, k), redo[r]])
    return rows, np.concatenate([columns[clear, :k].ravel(), c]).astype(np.int64)


def drop_excluded(
    scores: NDArray[np.float32], ids: NDArray[np.int64], exclude: NDArray[np.integer]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The top ``k`` without each query's own row, from a search for ``k + 1``.

    The one rule for leaving a query out of its own results, whatever the index: its row is
    removed where it was found, else the last result is dropped. For an exact search with
    equal scores in row order, both leave exactly the top ``k`` of the other rows.

    Args:
        scores: (Q, k + 1) scores, best first.
        ids: (Q, k + 1) row ids (-1 pads).
        exclude: (Q,) each query's own row, or -1 for none.

    Returns:
        (Q, k) scores and (Q, k) ids.
    """
    rows = np.asarray(exclude, dtype=np.int64).reshape(-1, 1)
    if len(rows) != len(ids):
        raise ValueError(f"exclude must give one row per query ({len(ids)}), got {len(rows)}")
    dropped = (ids == rows) & (rows >= 0)
    dropped[~dropped.any(axis=1), -1] = True
    keep = ~dropped
    width = ids.shape[1] - 1
    return scores[keep].reshape(-1, width), ids[keep].reshape(-1, width)
