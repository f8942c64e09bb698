"""dinokit.search.neighbours against a brute-force argsort of the full score matrix.

Everything runs in float32, the precision neighbours computes in. Tie tests use vectors of
+-0.25 entries in 16 dimensions: unit norm exactly and every cosine a multiple of 1/16, so
the scores are exact whatever the summation order and ties are real ties.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from dinokit.search import build_index, neighbours
from dinokit.search.vectors import drop_excluded

from ._synthetic import unit


def brute_force(
    queries: NDArray[np.floating],
    vectors: NDArray[np.floating],
    k: int,
    exclude: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Top k by a stable argsort of every score (ties in row order), padded with -1 / -inf."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = q.astype(np.float64) @ x.astype(np.float64).T
    if exclude is not None:
        own = exclude >= 0
        scores[np.flatnonzero(own), exclude[own]] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, 1)
    ids = np.where(np.isneginf(top), -1, order)
    pad = k - ids.shape[1]
    ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
    return top, ids


def sign_vectors(n: int, seed: int) -> NDArray[np.float32]:
    """``n`` vectors of +-0.25 in 16 dimensions, with repeated rows (exact ties)."""
    rng = np.random.default_rng(seed)
    x = rng.choice([-0.25, 0.25], size=(n, 16)).astype(np.float32)
    x[n // 2 :: 3] = x[1]  # a block of copies of row 1
    return x


@pytest.mark.parametrize("chunk", [1, 7, None])
@pytest.mark.parametrize("k", [1, 5, 50, 64])
def test_random_vectors_match_brute_force(k: int, chunk: int | None) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 12)).astype(np.float32)  # not unit: normalised inside
    queries = rng.normal(size=(23, 12)).astype(np.float32)
    scores, ids = neighbours(queries, vectors, k, chunk=chunk)
    expected_scores, expected_ids = brute_force(queries, vectors, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert scores.shape == ids.shape == (23, k)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 5, None])
@pytest.mark.parametrize("k", [1, 3, 10, 120, 130])
def test_ties_are_in_row_order(k: int, chunk: int | None) -> None:
    vectors = sign_vectors(120, seed=1)
    queries = np.concatenate([vectors[:20], sign_vectors(9, seed=2)])
    scores, ids = neighbours(queries, vectors, k, chunk=chunk)
    expected_scores, expected_ids = brute_force(queries, vectors, k)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores.astype(np.float32))


@pytest.mark.parametrize("chunk", [1, 4, None])
@pytest.mark.parametrize("k", [1, 4, 40, 45])
def test_queries_that_are_the_vectors_leave_themselves_out(k: int, chunk: int | None) -> None:
    vectors = sign_vectors(40, seed=3)  # rows 20, 23, ... are copies of row 1: tied with it
    own = np.arange(40)
    scores, ids = neighbours(vectors, vectors, k, exclude=own, chunk=chunk)
    expected_scores, expected_ids = brute_force(vectors, vectors, k, exclude=own)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores.astype(np.float32))
    assert not (ids == own[:, None]).any()
    # Every other row is found once k reaches N - 1; the rest is padding.
    assert ((ids >= 0).sum(axis=1) == min(k, 39)).all()


def test_some_rows_as_queries_with_and_without_an_own_row() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    rows = np.array([0, 5, 199])
    own = np.array([0, -1, 199])  # the middle query is not left out of its results
    scores, ids = neighbours(vectors[rows], vectors, 7, exclude=own, chunk=2)
    expected_scores, expected_ids = brute_force(vectors[rows], vectors, 7, exclude=own)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    assert ids[1, 0] == 5 and 0 not in ids[0] and 199 not in ids[2]


def test_k_larger_than_the_collection_is_padded() -> None:
    vectors = unit(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    scores, ids = neighbours(vectors[:1], vectors, 5)
    assert ids.tolist() == [[0, 1, 2, -1, -1]]
    np.testing.assert_allclose(scores[0, :3], [1.0, 0.8, 0.0], atol=1e-6)
    assert np.isneginf(scores[0, 3:]).all()
    scores, ids = neighbours(vectors[:1], vectors, 5, exclude=np.array([0]))
    assert ids.tolist() == [[1, 2, -1, -1, -1]]


def test_a_non_finite_vector_is_nobodys_neighbour() -> None:
    vectors = sign_vectors(10, seed=4)
    vectors[3] = np.nan
    _, ids = neighbours(vectors[:2], vectors, 10)
    assert 3 not in ids and (ids[:, -1] == -1).all()


def test_bad_arguments() -> None:
    x = sign_vectors(5, seed=5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        neighbours(x, x, 0)
    with pytest.raises(ValueError, match="queries have 8 dimensions, the vectors 16"):
        neighbours(x[:, :8], x, 2)
    with pytest.raises(ValueError, match="one row per query"):
        neighbours(x, x, 2, exclude=np.arange(3))


def test_exact_index_is_neighbours() -> None:
    vectors = sign_vectors(60, seed=6)
    index = build_index(vectors, "exact")
    own = np.arange(0, 60, 3)
    got = index.search(vectors[own], 8, exclude=own)
    expected = neighbours(vectors[own], vectors, 8, exclude=own)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])


def test_approximate_index_leaves_the_query_out_by_the_same_rule() -> None:
    rng = np.random.default_rng(7)
    vectors = unit(rng.normal(size=(400, 16)))
    own = np.arange(0, 400, 7)
    # nprobe = nlist scans every list: IVF is then exhaustive, so it must agree exactly.
    ivf = build_index(vectors, "ivf", nlist=8, nprobe=8)
    _, ids = ivf.search(vectors[own], 6, exclude=own)
    _, expected = neighbours(vectors[own], vectors, 6, exclude=own)
    np.testing.assert_array_equal(ids, expected)


def test_drop_excluded_removes_the_own_row_or_the_last() -> None:
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.9, -np.inf, -np.inf]], np.float32)
    ids = np.array([[4, 2, 9], [4, 2, 9], [4, -1, -1]])
    kept_scores, kept_ids = drop_excluded(scores, ids, np.array([2, 7, -1]))
    assert kept_ids.tolist() == [[4, 9], [4, 2], [4, -1]]
    np.testing.assert_array_equal(kept_scores[0], np.array([0.9, 0.7], np.float32))
