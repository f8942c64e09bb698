"""``dinokit attention``: DINO's last-block self-attention maps of images, as PNG and .npy."""

from __future__ import annotations

import argparse
from typing import Any


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "attention",
        help="draw the self-attention maps of the last block (per head and mean)",
        description=(
            "For each image: <name>.png (the image, the mean map over it, each head) and "
            "<name>.npy (every head's map, (heads, H, W), each summing to 1); with "
            "--threshold also <name>_mask.npy. Unreadable images are skipped."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument(
        "--model", required=True, help="registered name, run folder, exported or weights file"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--size", type=int, default=480, help="short side of the model input (default 480)"
    )
    parser.add_argument(
        "--threshold",
        type=_share,
        default=None,
        help="keep the most attended patches holding this share of the mass (DINO uses 0.6)",
    )
    parser.add_argument(
        "--heads", choices=("all", "mean"), default="all", help="panels of the PNG (default all)"
    )
    parser.add_argument("--branch", choices=("teacher", "student"), default="teacher")
    parser.add_argument(
        "--weights", default=None, help="with a registered name: a weights file, or 'none'"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: auto)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the maps; one line per skipped image comes from the library's log."""
    from ..viz.attention import attention

    result = attention(
        args.model,
        args.images,
        out=args.out,
        size=args.size,
        threshold=args.threshold,
        heads=args.heads,
        branch=args.branch,
        weights=args.weights,
        device=args.device,
    )
    images = sum(1 for p in result.written if p.suffix == ".png")
    skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
    noun = "image" if images == 1 else "images"
    print(f"wrote the attention maps of {images} {noun} to {args.out}{skipped}")
    return 0
