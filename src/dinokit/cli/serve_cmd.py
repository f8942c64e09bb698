"""``dinokit serve``: an HTTP search service and web page over an embeddings file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="search service: JSON API and web page (needs dinokit[serve])",
        description="Serve an embeddings file over HTTP: search by uploaded image, indexed "
        "image or vector, add images (kept in EMB.added/), browse clusters and duplicates. "
        "The page is at http://HOST:PORT/, the API docs at /docs.",
    )
    parser.add_argument("embeddings", type=Path, help="embeddings file written by dinokit embed")
    parser.add_argument("--clusters", type=Path, help="dinokit cluster output folder to browse")
    parser.add_argument("--duplicates", type=Path, help="dinokit duplicates groups CSV to browse")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (8000)")
    parser.add_argument(
        "--token",
        help="bearer token every API call must carry (default: $DINOKIT_SERVE_TOKEN; none)",
    )
    parser.add_argument(
        "--max-k", type=int, default=100, help="most results a search may ask (100)"
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest uploaded image in MiB (20)"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=32,
        help="uploads embedded in one forward pass at most (32)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long an upload waits for others to share its forward pass (5)",
    )
    parser.add_argument(
        "--index", default="auto", choices=("auto", "exact", "ivf", "hnsw"),
        help="index kind, as dinokit search (auto)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (auto)")
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"), help="(auto)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from ..serve import ServeConfig, serve

    serve(
        ServeConfig(
            embeddings=args.embeddings,
            clusters=args.clusters,
            duplicates=args.duplicates,
            host=args.host,
            port=args.port,
            token=args.token,
            max_k=args.max_k,
            max_upload_mb=args.max_upload_mb,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            index=args.index,
            device=args.device,
            precision=args.precision,
        )
    )
    return 0
