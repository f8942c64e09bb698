from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dinokit.cluster import candidate_ks, cluster, write_clusters
from dinokit.embeddings import Embeddings
from tests.data._helpers import write_jpeg

from ._synthetic import clustered_vectors


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def embeddings_of(x: np.ndarray, **metadata: object) -> Embeddings:
    n = len(x)
    return Embeddings([f"{i}.jpg" for i in range(n)], [None] * n, x, metadata=dict(metadata))


def test_well_separated_clusters_are_recovered_exactly() -> None:
    x, truth = clustered_vectors(k=5, per_cluster=40)
    result = cluster(embeddings_of(x), k=5, seed=0)
    assert same_partition(result.assignments, truth)
    assert sorted(result.sizes.tolist()) == [40] * 5
    assert result.distances.max() < 0.05
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)


def test_same_seed_same_result() -> None:
    x, _ = clustered_vectors(k=6, per_cluster=30, spread=0.6)
    first = cluster(embeddings_of(x), k=4, seed=3)
    again = cluster(embeddings_of(x), k=4, seed=3)
    np.testing.assert_array_equal(first.assignments, again.assignments)
    np.testing.assert_array_equal(first.centroids, again.centroids)


def test_auto_k_finds_the_planted_number() -> None:
    x, truth = clustered_vectors(k=7, per_cluster=30, dim=16)
    result = cluster(embeddings_of(x), k="auto")
    assert 7 in result.scores
    assert result.k == 7
    assert same_partition(result.assignments, truth)


def test_candidate_ks_are_log_spaced() -> None:
    ks = candidate_ks(10_000)
    assert ks[0] == 2 and ks[-1] == 200 and ks == sorted(set(ks)) and len(ks) <= 12


def test_too_many_clusters() -> None:
    x, _ = clustered_vectors(k=2, per_cluster=2)
    with pytest.raises(ValueError, match="k=5 clusters for 4 images"):
        cluster(embeddings_of(x), k=5)


def test_outputs_and_overwrite(tmp_path) -> None:
    x, _ = clustered_vectors(k=3, per_cluster=4)
    root = tmp_path / "images"
    for i in range(len(x)):
        write_jpeg(root / f"{i}.jpg", seed=i)
    emb = embeddings_of(x, roots=[str(root)])
    result = cluster(emb, k=3)
    out = tmp_path / "clusters"
    paths = write_clusters(emb, result, out)
    with paths["assignments"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == emb.paths
    assert [int(r["cluster"]) for r in rows] == result.assignments.tolist()
    assert json.loads(paths["summary"].read_text())["sizes"] == [4, 4, 4]
    assert sorted(p.name for p in paths["sheets"].iterdir()) == [
        "cluster_000.jpg",
        "cluster_001.jpg",
        "cluster_002.jpg",
    ]
    np.testing.assert_array_equal(np.load(paths["centroids"]), result.centroids)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_clusters(emb, result, out)
    write_clusters(emb, result, out, overwrite=True, sheets=False)
