"""``dinokit duplicates``: groups of near-duplicate and byte-identical images.

With ``--calibrate [N]`` the threshold is first chosen from modified copies of N of the
collection's own images (:func:`dinokit.duplicates.calibrate_threshold`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._table import format_table

if TYPE_CHECKING:
    from ..duplicates import ThresholdCalibration

_COLUMNS = (
    ("group", "group"),
    ("kind", "kind"),
    ("score", "score"),
    ("identical", "same bytes"),
    ("path", "path"),
    ("label", "label"),
)

_CALIBRATION_COLUMNS = (
    ("pairs", "copies vs original"),
    ("n", "n"),
    ("min", "min"),
    ("p5", "5th pct"),
    ("median", "median"),
    ("sets", "sets threshold"),
)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    from ..duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD
    from ..duplicates.calibration import DEFAULT_SAMPLE

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
        default=None,
        help=f"cosine similarity that makes a pair duplicates ({DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--calibrate",
        type=int,
        nargs="?",
        const=DEFAULT_SAMPLE,
        default=None,
        metavar="N",
        help="choose the threshold from JPEG-re-encoded and downscaled copies of N sampled "
        f"images, embedded with the recorded model ({DEFAULT_SAMPLE}); not with --threshold",
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=DEFAULT_NEIGHBOURS,
        help=f"nearest neighbours examined per image ({DEFAULT_NEIGHBOURS})",
    )
    parser.add_argument("--index", default="auto", choices=("auto", "exact", "ivf"))
    parser.add_argument("--no-hash", action="store_true", help="skip the byte-identical check")
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of bars")
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


def _print_calibration(c: ThresholdCalibration) -> None:
    """The calibration as a short table and the line that says how the threshold was set."""
    skipped = [f"{c.missing} files missing"] if c.missing else []
    skipped += [f"{c.unreadable} unreadable"] if c.unreadable else []
    note = f"; skipped: {', '.join(skipped)}" if skipped else ""
    print(f"calibration on {c.sampled} sampled images (seed {c.seed}{note})")
    rows = [
        {
            "pairs": s.description,
            "n": s.n,
            "min": f"{s.min:.4f}",
            "p5": f"{s.p5:.4f}",
            "median": f"{s.median:.4f}",
            "sets": "yes" if s.calibrates else "no",
        }
        for s in c.copies
    ]
    print(format_table(rows, _CALIBRATION_COLUMNS))
    d = c.distinct
    print(
        f"each image vs its most similar other image: n {d.n}, median {d.median:.4f}, "
        f"99th pct {d.p99:.4f}, max {d.max:.4f}"
    )
    compared = f"copies' 5th pct {c.copies_p5:.4f}, distinct images' 99th pct {d.p99:.4f}"
    if c.separable:
        print(
            f"copies and distinct images separate ({compared}): "
            f"threshold {c.threshold:.6g}, the midpoint"
        )
    else:
        print(
            f"copies and distinct images do NOT separate ({compared}): threshold "
            f"{c.threshold:.6g}, the fewest missed copies + linked distinct images"
        )
    print(
        f"at that threshold: {c.missed:.1%} of the copies missed, "
        f"{c.linked:.1%} of the distinct images linked"
    )
    print()


def run(args: argparse.Namespace) -> int:
    """Find the groups (after calibrating the threshold), print them and optionally write them."""
    from .._files import atomic_write
    from ..duplicates import DEFAULT_THRESHOLD, calibrate_threshold, find_duplicates
    from ..embeddings import Embeddings

    if args.calibrate is not None and args.threshold is not None:
        raise ValueError("--threshold and --calibrate exclude each other: give one of them")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() not in (".csv", ".json"):
            raise ValueError(f"{out}: --out must end in .csv or .json")
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    embeddings = Embeddings.load(args.embeddings)
    calibration = None
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if args.calibrate is not None:
        calibration = calibrate_threshold(
            embeddings, sample=args.calibrate, progress=not args.no_progress
        )
        threshold = calibration.threshold
    groups = find_duplicates(
        embeddings,
        threshold=threshold,
        neighbours=args.neighbours,
        index=args.index,
        hash_files=not args.no_hash,
        progress=not args.no_progress,
    )
    found: Any = [g.to_dict() for g in groups]
    if calibration is not None:
        found = {"threshold": threshold, "calibration": calibration.to_dict(), "groups": found}
    document = json.dumps(found, indent=2)
    if out is not None:
        text = document if out.suffix.lower() == ".json" else _csv(groups)
        atomic_write(out, lambda tmp: tmp.write_text(text))
    if args.json:
        print(document)
        return 0
    if calibration is not None:
        _print_calibration(calibration)
    images = sum(len(g.members) for g in groups)
    print(f"{len(groups)} groups, {images} images (cosine >= {threshold:.6g})")
    if groups:
        print(format_table(_rows(groups), _COLUMNS))
    if out is not None:
        print(f"wrote {out}")
    return 0
