"""``dinokit duplicates``: groups of near-duplicate and byte-identical images."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from ._table import format_table

_COLUMNS = (
    ("group", "group"),
    ("kind", "kind"),
    ("score", "score"),
    ("identical", "same bytes"),
    ("path", "path"),
    ("label", "label"),
)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    from ..duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD

    parser = subparsers.add_parser(
        "duplicates",
        help="find near-duplicate and identical images",
        description="Groups of images whose embeddings have cosine similarity >= THRESHOLD "
        "(connected components of a k-NN graph), plus byte-identical files.",
    )
    parser.add_argument("embeddings", help="embeddings file written by dinokit embed")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"cosine similarity that makes a pair duplicates ({DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=DEFAULT_NEIGHBOURS,
        help=f"nearest neighbours examined per image ({DEFAULT_NEIGHBOURS})",
    )
    parser.add_argument("--index", default="auto", choices=("auto", "exact", "ivf"))
    parser.add_argument("--no-hash", action="store_true", help="skip the byte-identical check")
    parser.add_argument("--out", help="write the groups to a .csv or .json file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def _rows(groups: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "group": g.group,
            "kind": g.kind,
            "score": f"{m.score:.4f}",
            "identical": "yes" if m.identical else "",
            "path": m.path,
            "label": m.label,
        }
        for g in groups
        for m in g.members
    ]


def _csv(groups: list[Any]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["group", "kind", "path", "label", "score", "identical"])
    for g in groups:
        for m in g.members:
            writer.writerow([g.group, g.kind, m.path, m.label or "", f"{m.score:.6f}", m.identical])
    return text.getvalue()


def run(args: argparse.Namespace) -> int:
    """Find the groups, print them and optionally write them."""
    from .._files import atomic_write
    from ..duplicates import find_duplicates

    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() not in (".csv", ".json"):
            raise ValueError(f"{out}: --out must end in .csv or .json")
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    groups = find_duplicates(
        args.embeddings,
        threshold=args.threshold,
        neighbours=args.neighbours,
        index=args.index,
        hash_files=not args.no_hash,
    )
    document = json.dumps([g.to_dict() for g in groups], indent=2)
    if out is not None:
        text = document if out.suffix.lower() == ".json" else _csv(groups)
        atomic_write(out, lambda tmp: tmp.write_text(text))
    if args.json:
        print(document)
        return 0
    images = sum(len(g.members) for g in groups)
    print(f"{len(groups)} groups, {images} images (cosine >= {args.threshold})")
    if groups:
        print(format_table(_rows(groups), _COLUMNS))
    if out is not None:
        print(f"wrote {out}")
    return 0
