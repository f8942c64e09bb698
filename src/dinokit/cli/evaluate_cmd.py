"""``dinokit evaluate``: kNN / linear-probe accuracy and label-free scores, side by side."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._table import format_table


def _ks(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--k takes integers like 10,20,100,200: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--k takes positive integers, got {text!r}")
    return values


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare models and preprocessing by kNN accuracy on labelled folders",
        description="DINO's weighted kNN (cosine, T=0.07) for each k, an optional linear "
        "probe, and label-free scores (effective rank, uniformity), one row per model x "
        "preprocessing x branch.",
    )
    parser.add_argument(
        "--model", action="append", default=[], help="model to evaluate (repeat to compare)"
    )
    parser.add_argument("--weights", help="weights for registered names ('none': random init)")
    parser.add_argument("--train", help="labelled folder (class/image): kNN references")
    parser.add_argument("--val", help="labelled folder: images to classify")
    parser.add_argument("--train-embeddings", help="embeddings file to evaluate as well")
    parser.add_argument("--val-embeddings", help="its validation embeddings file")
    parser.add_argument(
        "--preprocess",
        action="append",
        default=None,
        choices=("center-crop", "resize", "letterbox", "native"),
        help="preprocessing mode (repeat to compare; default: each model's own)",
    )
    parser.add_argument(
        "--branch",
        action="append",
        default=None,
        choices=("teacher", "student"),
        help="branch of run folders (repeat to compare; default teacher)",
    )
    parser.add_argument("--feature", default="cls", help="cls | mean | cls+mean | last4")
    parser.add_argument("--k", type=_ks, default=[10, 20, 100, 200], help="10,20,100,200")
    parser.add_argument("--linear", action="store_true", help="also fit a linear probe")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="leave out the baseline rows (random init of a trained model's architecture, raw "
        "pixels; added with labelled --train and --val folders)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate every recipe and print one table."""
    from ..api import evaluate

    rows = evaluate(
        args.model,
        train=args.train,
        val=args.val,
        train_embeddings=args.train_embeddings,
        val_embeddings=args.val_embeddings,
        weights=args.weights,
        preprocess=args.preprocess or [None],
        branch=args.branch or ["teacher"],
        feature=args.feature,
        k=args.k,
        linear=args.linear,
        batch_size=args.batch_size,
        workers=args.workers,
        precision=args.precision,
        device=args.device,
        baselines=args.baselines,
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    columns = [
        ("model", "model"),
        ("preprocess", "preprocess"),
        ("branch", "branch"),
        ("n", "train/val"),
    ]
    columns += [(f"knn{k}", f"kNN@{k}") for k in args.k]
    if args.linear:
        columns.append(("linear", "linear"))
    columns += [("erank", "eff. rank"), ("uniformity", "uniformity")]
    table = []
    for r in rows:
        cells: dict[str, Any] = {
            "model": r.model,
            "preprocess": r.preprocess,
            "branch": r.branch,
            "n": f"{r.n_train}/{r.n_val}",
            "linear": None if r.linear is None else f"{100 * r.linear:.2f}",
            "erank": f"{r.quality['effective_rank']:.2f}" if r.quality else None,
            "uniformity": f"{r.quality['uniformity']:.3f}" if r.quality else None,
        }
        for k, acc in r.knn.items():
            cells[f"knn{k}"] = f"{100 * acc:.2f}"
        table.append(cells)
    print(format_table(table, columns))
    print("\naccuracies in %; eff. rank: higher is better; uniformity: lower is better")
    return 0
