from __future__ import annotations

import shutil

import numpy as np
import pytest

from dinokit.duplicates import connected_components, find_duplicates
from dinokit.embeddings import Embeddings
from tests.data._helpers import write_jpeg

from ._synthetic import random_embeddings, unit


def test_connected_components_of_chains_and_singletons() -> None:
    a = np.array([5, 1, 3, 8], dtype=np.int64)
    b = np.array([4, 2, 2, 9], dtype=np.int64)
    labels = connected_components(10, a, b)
    assert labels.tolist() == [0, 1, 1, 1, 4, 4, 6, 7, 8, 8]


def test_connected_components_long_chain_in_reverse() -> None:
    n = 1000
    a = np.arange(n - 1, 0, -1, dtype=np.int64)
    labels = connected_components(n, a, a - 1)
    assert (labels == 0).all()


@pytest.mark.parametrize("index", ["exact", "ivf"])
def test_planted_duplicates_are_found(index: str) -> None:
    rng = np.random.default_rng(0)
    base = random_embeddings(400, dim=64, seed=0)
    vectors = base.vectors.copy()
    # Plant a pair (2 -> 300), a triple through a chain (10 -> 301 -> 302) and a copy.
    planted = {300: 2, 301: 10, 302: 301, 303: 50}
    for target, source in planted.items():
        vectors[target] = unit(vectors[source][None] + 0.02 * rng.normal(size=(1, 64)))[0]
    emb = Embeddings(paths=base.paths, labels=base.labels, vectors=vectors)
    groups = find_duplicates(emb, threshold=0.95, index=index, nprobe=64, hash_files=False)
    found = sorted(sorted(m.row for m in g.members) for g in groups)
    assert found == [[2, 300], [10, 301, 302], [50, 303]]
    assert groups[0].kind == "near" and len(groups[0].members) == 3
    for group in groups:
        for member in group.members:
            assert 0.95 <= member.score <= 1.0 + 1e-6
            assert not member.identical


def test_threshold_and_exact_ties() -> None:
    one = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    # Twenty identical vectors (more than the neighbours searched) form one group.
    vectors = np.concatenate([np.repeat(one, 20, axis=0), [[0.0, 1.0, 0.0], [0.0, 0.9, 0.1]]])
    emb = Embeddings(paths=[f"{i}.jpg" for i in range(22)], labels=[None] * 22, vectors=vectors)
    groups = find_duplicates(emb, threshold=0.995, neighbours=4, hash_files=False)
    assert [len(g.members) for g in groups] == [20]
    groups = find_duplicates(emb, threshold=0.9, neighbours=4, hash_files=False)
    assert [len(g.members) for g in groups] == [20, 2]


def test_byte_identical_files_are_grouped(tmp_path) -> None:
    root = tmp_path / "images"
    write_jpeg(root / "a.jpg", seed=1)
    shutil.copy(root / "a.jpg", root / "copy_of_a.jpg")
    write_jpeg(root / "b.jpg", seed=2)
    write_jpeg(root / "c.jpg", seed=3)
    emb = random_embeddings(4, dim=8, seed=9)  # unrelated vectors: only the bytes match
    emb = Embeddings(
        paths=["a.jpg", "b.jpg", "c.jpg", "copy_of_a.jpg"],
        labels=[None] * 4,
        vectors=emb.vectors,
        metadata={"roots": [str(root)]},
    )
    (group,) = find_duplicates(emb, threshold=0.999)
    assert group.kind == "identical"
    assert sorted(m.path for m in group.members) == ["a.jpg", "copy_of_a.jpg"]
    assert all(m.identical for m in group.members)
    assert find_duplicates(emb, threshold=0.999, hash_files=False) == []


def test_bad_arguments() -> None:
    emb = random_embeddings(5)
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        find_duplicates(emb, threshold=1.5)
    with pytest.raises(ValueError, match="not 'hnsw'"):
        find_duplicates(emb, index="hnsw")
