"""``dinokit map``: a 2-D layout of embeddings as a PNG scatter coloured by label or cluster."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "map", help="draw a 2-D map (PCA, UMAP or t-SNE) of an embeddings file as a PNG"
    )
    parser.add_argument("embeddings", help="embeddings file (.parquet, .npy or .csv)")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--method",
        choices=("pca", "umap", "tsne"),
        default="pca",
        help="layout: pca (default), umap or tsne (these two need: pip install 'dinokit[viz]')",
    )
    parser.add_argument(
        "--color",
        choices=("label", "cluster"),
        default=None,
        help="colour points by folder label or by cluster (default: label when labelled)",
    )
    parser.add_argument("--clusters", metavar="DIR", help="output folder of dinokit cluster")
    parser.add_argument(
        "--thumbnails", type=int, default=0, metavar="N", help="draw N images at spread-out points"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Draw the map."""
    from ..viz.map import plot_map

    if args.thumbnails < 0:
        raise ValueError(f"--thumbnails must be >= 0, got {args.thumbnails}")
    result = plot_map(
        args.embeddings,
        args.out,
        method=args.method,
        color=args.color,
        clusters=args.clusters,
        thumbnails=args.thumbnails,
        overwrite=args.overwrite,
        seed=args.seed,
    )
    groups = f", {len(result.legend)} legend entries" if result.legend else ""
    print(f"wrote {result.path} ({len(result.coords)} points, {result.method}{groups})")
    return 0
