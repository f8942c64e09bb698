"""``dinokit cluster``: k-means clusters, assignments and one contact sheet per cluster."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._table import format_table


def _k(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"k must be an integer or 'auto', got {text!r}") from None


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "cluster",
        help="group the images into k clusters",
        description="Spherical k-means (FAISS, seeded). Writes assignments.csv, centroids.npy, "
        "clusters.json and sheets/cluster_NNN.jpg (closest to the centroid first).",
    )
    parser.add_argument("embeddings", help="embeddings file written by dinokit embed")
    parser.add_argument(
        "-k",
        "--k",
        type=_k,
        default=20,
        help="number of clusters, or 'auto' (best simplified silhouette) (20)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--iterations", type=int, default=25, help="k-means iterations (25)")
    parser.add_argument("--per-sheet", type=int, default=48, help="thumbnails per sheet (48)")
    parser.add_argument("--no-sheets", action="store_true", help="skip the contact sheets")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Cluster, write the outputs, print the cluster sizes."""
    from ..cluster import cluster, write_clusters
    from ..embeddings import Embeddings

    emb = Embeddings.load(args.embeddings)
    result = cluster(emb, args.k, seed=args.seed, iterations=args.iterations)
    paths = write_clusters(
        emb,
        result,
        args.out,
        sheets=not args.no_sheets,
        per_sheet=args.per_sheet,
        overwrite=args.overwrite,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "k": result.k,
                    "sizes": result.sizes.tolist(),
                    "auto_scores": {str(k): v for k, v in result.scores.items()},
                    "out": str(args.out),
                },
                indent=2,
            )
        )
        return 0
    if result.scores:
        scores = ", ".join(f"{k}: {v:.3f}" for k, v in result.scores.items())
        print(f"suggested k = {result.k} (simplified silhouette by k: {scores})")
    rows = []
    for c in range(result.k):
        members = result.members(c)
        closest = emb.paths[int(members[0])] if len(members) else None
        rows.append({"cluster": c, "size": int(result.sizes[c]), "closest": closest})
    print(
        format_table(
            rows, (("cluster", "cluster"), ("size", "size"), ("closest", "closest to centroid"))
        )
    )
    print(
        f"wrote {paths['assignments']} and {result.k} contact sheets in {paths['sheets']}"
        if not args.no_sheets
        else f"wrote {paths['assignments']}"
    )
    return 0
