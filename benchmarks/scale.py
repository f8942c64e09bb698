"""Search, duplicates and k-means at 1M x 384 vectors, and against scikit-learn at 100k.

Generates random-but-clustered unit vectors (Gaussian blobs around random centres, plus
planted near-duplicates), then reports: search latency per query batch (exact and IVF) with
IVF's recall@10 against exact search, duplicates wall time and peak memory, k-means (k=1000)
wall time; and on a 100k subset the time of scikit-learn's ``NearestNeighbors`` (brute-force
cosine) and ``KMeans`` against dinokit's, as ratios.

    pip install -e '.[bench]'          # scikit-learn for the comparison
    python benchmarks/scale.py         # --n 1000000 --dim 384
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dinokit.cluster import cluster
from dinokit.duplicates import find_duplicates
from dinokit.embeddings import Embeddings
from dinokit.search import build_index, recall_at_k


def clustered(
    n: int, dim: int, *, centres: int, spread: float, duplicates: int, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """(n, dim) unit vectors around ``centres`` random directions; returns the planted pairs."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(centres, dim)).astype(np.float32)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # chunks: no full-size float64 temporaries
        stop = min(start + 100_000, n)
        block = mean[rng.integers(centres, size=stop - start)]
        block += spread * rng.normal(size=block.shape).astype(np.float32) / np.sqrt(dim)
        x[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    pairs = rng.choice(n, size=(duplicates, 2), replace=False)
    noisy = x[pairs[:, 0]] + 0.1 * rng.normal(size=(duplicates, dim)).astype(np.float32) / np.sqrt(
        dim
    )
    x[pairs[:, 1]] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    return x, pairs


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def search_part(x: NDArray[np.float32], queries: NDArray[np.float32]) -> None:
    """Exact and IVF search latency for one batch of queries, and IVF recall@10."""
    exact, t_build = timed(lambda: build_index(x, "exact"))
    (_, exact_ids), t_exact = timed(lambda: exact.search(queries, 10))
    print(f"exact: build {t_build:.1f} s, {len(queries)} queries {t_exact:.2f} s")
    ivf, t_build = timed(lambda: build_index(x, "ivf"))
    for nprobe in (8, 32, 64):
        ivf.index.nprobe = nprobe
        (_, ids), t = timed(lambda: ivf.search(queries, 10))
        print(
            f"ivf nlist={ivf.spec.nlist} nprobe={nprobe}: build {t_build:.1f} s, "
            f"{len(queries)} queries {t:.2f} s ({t_exact / t:.1f}x exact), "
            f"recall@10 {recall_at_k(ids, exact_ids):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--subset", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--skip-search", action="store_true", help="only duplicates and k-means")
    parser.add_argument("--dup-index", default="auto", help="index of the duplicates k-NN graph")
    parser.add_argument("--dup-nprobe", type=int, default=8, help="IVF lists per duplicates query")
    args = parser.parse_args()

    x, planted = clustered(args.n, args.dim, centres=2000, spread=1.0, duplicates=1000, seed=0)
    print(
        f"{args.n} x {args.dim} vectors ({x.nbytes / 1e9:.2f} GB), peak RSS {peak_rss_gb():.2f} GB"
    )
    rng = np.random.default_rng(1)
    queries = x[rng.choice(args.n, size=args.queries, replace=False)]

    if not args.skip_search:
        search_part(x, queries)

    emb = Embeddings([f"{i}.jpg" for i in range(args.n)], [None] * args.n, x)
    before = peak_rss_gb()
    groups, t_dup = timed(
        lambda: find_duplicates(
            emb, threshold=0.95, index=args.dup_index, nprobe=args.dup_nprobe, hash_files=False
        )
    )
    found = {frozenset(m.row for m in g.members) for g in groups if len(g.members) == 2}
    hit = sum(frozenset(p.tolist()) in found for p in planted)
    print(
        f"duplicates: {t_dup:.1f} s, {len(groups)} groups, {hit}/{len(planted)} planted pairs "
        f"found, peak RSS {peak_rss_gb():.2f} GB (was {before:.2f} GB before)"
    )
    result, t_km = timed(lambda: cluster(emb, k=args.clusters, seed=0))
    print(f"k-means k={args.clusters}: {t_km:.1f} s, largest cluster {result.sizes.max()}")

    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    sub = x[: args.subset]
    sub_q = queries[: args.queries]

    def ours_knn() -> Any:
        return build_index(sub, "exact").search(sub_q, 10)

    def sklearn_knn() -> Any:
        model = NearestNeighbors(n_neighbors=10, algorithm="brute", metric="cosine").fit(sub)
        return model.kneighbors(sub_q)

    (_, ours_ids), t_ours = timed(ours_knn)
    (_, sk_ids), t_sk = timed(sklearn_knn)
    print(
        f"{args.subset} subset, {args.queries} queries top-10: dinokit {t_ours:.2f} s, "
        f"sklearn NearestNeighbors {t_sk:.2f} s: {t_sk / t_ours:.1f}x; "
        f"same neighbours {recall_at_k(ours_ids, sk_ids):.4f}"
    )
    sub_emb = emb.subset(np.arange(args.subset))
    _, t_ours = timed(lambda: cluster(sub_emb, k=args.clusters, seed=0))
    _, t_sk = timed(lambda: KMeans(args.clusters, n_init=1, max_iter=25, random_state=0).fit(sub))
    print(
        f"{args.subset} subset k-means k={args.clusters}, 25 iterations: dinokit {t_ours:.1f} s, "
        f"sklearn KMeans {t_sk:.1f} s: {t_sk / t_ours:.1f}x"
    )


if __name__ == "__main__":
    main()
