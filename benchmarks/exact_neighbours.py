"""Exact top-k: dinokit.search.neighbours against FAISS's IndexFlatIP, in one run.

Three shapes: one query against N vectors (a search), a batch of queries (the server's
micro-batches), and every vector against all the others (the duplicates' k-NN graph).
Random unit vectors, float32; prints the time of each, their ratio and the share of
identical neighbour ids (random vectors have no ties, so it should be 1).

    python benchmarks/exact_neighbours.py            # --n 100000 --dim 384 --graph 20000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dinokit.search import neighbours
from dinokit.search.index import import_faiss


def best_of(fn: Callable[[], Any], rounds: int) -> tuple[Any, float]:
    """``(fn(), fastest seconds of rounds)``."""
    out, best = None, float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def compare(name: str, x: NDArray[np.float32], q: NDArray[np.float32], k: int, rounds: int) -> None:
    """Time both on the same queries and print one line."""
    faiss = import_faiss()
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    (_, ours), t_ours = best_of(lambda: neighbours(q, x, k), rounds)
    (_, theirs), t_faiss = best_of(lambda: flat.search(q, k), rounds)
    print(
        f"{name}: {len(q)} x {len(x)} x {x.shape[1]}, k={k}: neighbours {t_ours:.3f} s, "
        f"IndexFlatIP {t_faiss:.3f} s ({t_faiss / t_ours:.2f}x), "
        f"same ids {np.mean(ours == theirs):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--graph", type=int, default=20_000, help="vectors of the k-NN graph")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    compare("one query", x, x[:1], 10, args.rounds)
    compare("16 queries", x, x[:16], 10, args.rounds)
    graph = x[: args.graph]
    compare("k-NN graph", graph, graph, 17, max(1, args.rounds - 2))


if __name__ == "__main__":
    main()
