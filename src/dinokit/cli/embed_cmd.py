"""``dinokit embed``: flags -> :class:`~dinokit.embed.EmbedConfig` -> one embeddings file."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "embed",
        help="one vector per image of folders / list files (Parquet, .npy or CSV)",
        description=(
            "Embed every image of folders (recursive; labelled by first-level subfolders), "
            "list files and image files. Re-running on a grown folder embeds only the new "
            "images; an interrupted run resumes where it stopped."
        ),
    )
    parser.add_argument("data", nargs="+", help="image folders, list files (.txt/.lst), images")
    parser.add_argument(
        "--model", required=True, help="backbone name, timm:<name>, run folder or weights file"
    )
    parser.add_argument("--weights", help="with a name: a weights file, or 'none' (random init)")
    parser.add_argument("--branch", choices=("teacher", "student"), default="teacher")
    parser.add_argument(
        "--preprocess",
        choices=("center-crop", "resize", "letterbox", "native"),
        help="preprocessing mode (default: the model's own, center-crop)",
    )
    parser.add_argument("--size", type=int, help="input size in pixels (default: the model's)")
    parser.add_argument(
        "--feature", choices=("cls", "mean", "cls+mean", "last4"), default="cls", help="(cls)"
    )
    parser.add_argument(
        "--no-normalize", dest="normalize", action="store_false", help="keep raw vectors"
    )
    parser.add_argument(
        "--patch-tokens", action="store_true", help="also store patch tokens (.parquet only)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward (64)")
    parser.add_argument("--workers", type=int, help="decoding processes (all cores but one)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--out", required=True, help="FILE.parquet, FILE.npy or FILE.csv")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an output made with other options"
    )
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed, print a one-line summary."""
    import os

    from ..embed import EmbedConfig, run_embed

    config = EmbedConfig(
        inputs=list(args.data),
        model=args.model,
        weights=args.weights,
        branch=args.branch,
        preprocess=args.preprocess,
        size=args.size,
        feature=args.feature,
        normalize=args.normalize,
        patch_tokens=args.patch_tokens,
        batch_size=args.batch_size,
        workers=args.workers,
        precision=args.precision,
        device=args.device,
        out=args.out,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    summary, _ = run_embed(config)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(summary.line())
    return 0
