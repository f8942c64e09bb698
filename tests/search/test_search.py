from __future__ import annotations

import numpy as np
import pytest

from dinokit.embeddings import Embeddings
from dinokit.search import build_index, index_for_file, recall_at_k, search
from dinokit.search.cache import cache_paths

from ._synthetic import random_embeddings


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ vectors.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_index_matches_brute_force(kind: str) -> None:
    emb = random_embeddings(500, dim=16, seed=1)
    queries = random_embeddings(20, dim=16, seed=2).vectors
    # nprobe = nlist and a wide HNSW beam make the approximate kinds exhaustive here.
    index = build_index(emb.vectors, kind, nlist=8, nprobe=8, ef_search=500)
    scores, ids = index.search(queries, 10)
    expected = brute_force(emb.vectors, queries, 10)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ emb.vectors.T, ids, 1), atol=1e-5
    )
    assert recall_at_k(ids, expected) == 1.0


def test_search_by_vector_and_indexed_path(tmp_path) -> None:
    emb = random_embeddings(200, seed=3)
    file = emb.save(tmp_path / "emb.parquet")
    results = search(file, query_path="img_0007.jpg", query_vectors=emb.vectors[:2], k=5)
    assert [r.query for r in results] == ["img_0007.jpg", "vector 0", "vector 1"]
    expected = brute_force(emb.vectors, emb.vectors[[7, 0, 1]], 6)
    # An indexed query is left out of its own results; a vector query is not.
    assert [n.row for n in results[0].neighbours] == expected[0, 1:6].tolist()
    assert [n.row for n in results[1].neighbours] == expected[1, :5].tolist()
    assert results[1].neighbours[0].score == pytest.approx(1.0, abs=1e-5)
    assert [n.rank for n in results[2].neighbours] == [1, 2, 3, 4, 5]
    assert results[2].neighbours[0].path == "img_0001.jpg"


def test_index_is_cached_and_rebuilt_when_the_file_changes(tmp_path) -> None:
    file = random_embeddings(100, seed=4).save(tmp_path / "emb.parquet")
    index_file, record_file = cache_paths(file)
    index_for_file(file)
    assert index_file.exists() and record_file.exists()
    first = index_file.stat().st_mtime_ns
    record = record_file.read_text()

    index_for_file(file)  # unchanged file: the cache is reused as is
    assert index_file.stat().st_mtime_ns == first
    assert record_file.read_text() == record

    grown = random_embeddings(150, seed=5)
    grown.save(file, overwrite=True)
    emb, index = index_for_file(file)
    assert index.ntotal == 150 and len(emb) == 150
    assert record_file.read_text() != record
    hits = search(file, query_vectors=grown.vectors[120], k=1)
    assert hits[0].neighbours[0].row == 120


def test_cache_of_another_kind_is_not_reused(tmp_path) -> None:
    file = random_embeddings(300, seed=6).save(tmp_path / "emb.parquet")
    _, exact = index_for_file(file, kind="exact")
    _, ivf = index_for_file(file, kind="ivf")
    assert exact.spec.kind == "exact" and ivf.spec.kind == "ivf"
    assert type(ivf.index).__name__ == "IndexIVFFlat"


def test_query_of_another_dimension_is_a_clear_error(tmp_path) -> None:
    file = random_embeddings(50, dim=32).save(tmp_path / "emb.parquet")
    with pytest.raises(ValueError, match="query vectors have 16 dimensions, the embeddings 32"):
        search(file, query_vectors=np.ones((1, 16), dtype=np.float32))


def test_unknown_indexed_path_and_empty_query(tmp_path) -> None:
    file = random_embeddings(10).save(tmp_path / "emb.parquet")
    with pytest.raises(ValueError, match="not in these embeddings"):
        search(file, query_path="nope.jpg")
    with pytest.raises(ValueError, match="nothing to search for"):
        search(file)
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        search(tmp_path / "missing.parquet", query_path="img_0000.jpg")


def test_in_memory_embeddings_and_k_larger_than_n() -> None:
    emb = Embeddings(
        paths=["a.jpg", "b.jpg", "c.jpg"],
        labels=["x", "y", None],
        vectors=np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32),
    )
    (result,) = search(emb, query_path="a.jpg", k=10)
    assert [(n.path, n.label) for n in result.neighbours] == [("b.jpg", "y"), ("c.jpg", None)]
    assert result.neighbours[0].score == pytest.approx(0.8)
