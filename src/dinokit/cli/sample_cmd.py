"""``dinokit sample-data``: write the built-in labelled sample images (drawn textures)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "sample-data", help="write a small labelled folder of drawn textures (for demos)"
    )
    parser.add_argument("out", help="destination folder (gets train/ and val/)")
    parser.add_argument("--per-class", type=int, default=60, help="train images per class")
    parser.add_argument("--val-per-class", type=int, default=20, help="val images per class")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the images."""
    from pathlib import Path

    from ..sample_data import PATTERNS, make_sample_images

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} is not empty: pass --overwrite or choose another folder")
    make_sample_images(
        out,
        per_class=args.per_class,
        val_per_class=args.val_per_class,
        size=args.size,
        seed=args.seed,
    )
    total = len(PATTERNS) * (args.per_class + args.val_per_class)
    print(f"wrote {total} images of {len(PATTERNS)} textures to {out}/train and {out}/val")
    return 0
