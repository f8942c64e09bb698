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
    ("weights_file", "official weights"),
    ("local_path", "local copy"),
)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("models", help="list the registered backbones")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    from ..models.summary import describe_backbones

    rows = describe_backbones()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, _COLUMNS))
        print("\nAny timm ViT is also available as timm:<name> (e.g. timm:vit_small_patch16_224).")
    return 0
