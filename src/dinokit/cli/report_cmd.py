"""``dinokit report``: one static HTML page of an embeddings file."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write one static HTML page: summary, map, clusters, neighbours, duplicates",
    )
    parser.add_argument("embeddings", help="embeddings file (.parquet, .npy or .csv)")
    parser.add_argument(
        "--out", required=True, help="HTML file to write (thumbnails go to <name>_files/)"
    )
    parser.add_argument("--clusters", metavar="DIR", help="output folder of dinokit cluster")
    parser.add_argument(
        "--duplicates", metavar="CSV", help="groups.csv written by dinokit duplicates"
    )
    parser.add_argument(
        "--inline",
        action="store_true",
        help="embed the images in the page (one file to share, larger)",
    )
    parser.add_argument(
        "--queries", type=int, default=24, help="images whose neighbours are shown (default 24)"
    )
    parser.add_argument("-k", "--neighbours", type=int, default=8, help="neighbours per image")
    parser.add_argument(
        "--per-cluster", type=int, default=24, help="images shown per cluster (default 24)"
    )
    parser.add_argument(
        "--method", choices=("pca", "umap", "tsne"), default="pca", help="layout of the map"
    )
    parser.add_argument("--workers", type=int, default=None, help="thumbnail threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the report."""
    from ..viz.report import write_report

    for name in ("queries", "neighbours", "per_cluster"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
    result = write_report(
        args.embeddings,
        args.out,
        clusters=args.clusters,
        duplicates=args.duplicates,
        overwrite=args.overwrite,
        inline=args.inline,
        queries=args.queries,
        neighbours=args.neighbours,
        per_cluster=args.per_cluster,
        map_method=args.method,
        workers=args.workers,
        seed=args.seed,
    )
    unreadable = f", {result.unreadable} unreadable" if result.unreadable else ""
    print(
        f"wrote {result.path} ({result.images} images, {result.thumbnails} thumbnails"
        f"{unreadable}, {result.seconds:.1f} s)"
    )
    return 0
