"""Synthetic embeddings with a known structure."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dinokit.embeddings import Embeddings


def unit(x: NDArray[np.float64]) -> NDArray[np.float32]:
    """Rows L2-normalised, float32."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_embeddings(n: int, dim: int = 32, seed: int = 0) -> Embeddings:
    """``n`` random unit vectors named ``img_0000.jpg``..."""
    rng = np.random.default_rng(seed)
    return Embeddings(
        paths=[f"img_{i:04d}.jpg" for i in range(n)],
        labels=[None] * n,
        vectors=unit(rng.normal(size=(n, dim))),
    )


def clustered_vectors(
    k: int, per_cluster: int, dim: int = 16, spread: float = 0.05, seed: int = 0
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Unit vectors around ``k`` orthogonal centres, and the centre of each."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k]
    truth = np.repeat(np.arange(k), per_cluster)
    x = centres[truth] + spread * rng.normal(size=(k * per_cluster, dim))
    order = rng.permutation(len(truth))
    return unit(x[order]), truth[order]
