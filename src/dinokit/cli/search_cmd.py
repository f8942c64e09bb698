"""``dinokit search``: the most similar images to query images or indexed paths."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._table import format_table

_COLUMNS = (("rank", "rank"), ("score", "score"), ("path", "path"), ("label", "label"))


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "search",
        help="find the images most similar to a query",
        description="Top-k cosine search in an embeddings file. The FAISS index is cached "
        "next to the file (EMB.faiss) and rebuilt when the file changes.",
    )
    parser.add_argument("embeddings", help="embeddings file written by dinokit embed")
    parser.add_argument(
        "--query",
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="image file(s), embedded with the model recorded in the embeddings",
    )
    parser.add_argument(
        "--query-path",
        nargs="+",
        default=[],
        metavar="PATH",
        help="already indexed image(s), by stored or file path (left out of their results)",
    )
    parser.add_argument("-k", type=int, default=10, help="results per query (10)")
    parser.add_argument(
        "--index",
        default="auto",
        choices=("auto", "exact", "ivf", "hnsw"),
        help="auto: exact up to 100,000 images, IVF above",
    )
    parser.add_argument("--nprobe", type=int, default=32, help="IVF lists scanned per query (32)")
    parser.add_argument(
        "--no-cache", action="store_true", help="do not read or write the index cache"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Search and print one table (or one JSON document) for all queries."""
    from ..search import search

    if not args.query and not args.query_path:
        raise ValueError("give --query IMAGE or --query-path PATH")
    results = search(
        args.embeddings,
        args.query or None,
        query_path=args.query_path or None,
        k=args.k,
        index=args.index,
        nprobe=args.nprobe,
        cache=not args.no_cache,
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for i, result in enumerate(results):
        if i:
            print()
        print(f"query: {result.query}")
        rows = [
            {"rank": n.rank, "score": f"{n.score:.4f}", "path": n.path, "label": n.label}
            for n in result.neighbours
        ]
        print(format_table(rows, _COLUMNS))
    return 0
