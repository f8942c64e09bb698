"""``dinokit models``: the registered backbones and whether their weights are local."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._table import format_table

_COLUMNS = (
    ("name", "name"),
    ("architecture", "arch"),
    ("embed_dim", "dim"),
    ("patch_size", "patch"),
    ("image_size", "size"),
    ("params_m", "params(M)"),
    ("fp32_gb", "fp32 GB"),
    ("weights_file", "official weights"),
    ("licence", "licence"),
    ("local_path", "local copy"),
)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("models", help="list the registered backbones")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    from ..models.registry import DINOV3_LICENCE
    from ..models.summary import describe_backbones

    rows = describe_backbones()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, _COLUMNS))
        print("\nAny timm ViT is also available as timm:<name> (e.g. timm:vit_small_patch16_224).")
        if any(row["licence"] == DINOV3_LICENCE for row in rows):
            print(
                f"The dinov3_* weights are under the {DINOV3_LICENCE} (not Apache-2.0) and come "
                "through a licence form linked from the facebookresearch/dinov3 README; put the "
                "file in the torch hub checkpoints folder or pass --weights FILE."
            )
    return 0
