"""``dinokit embed``: flags -> :class:`~dinokit.embed.EmbedConfig` -> one embeddings file.

The flags are the config's fields (:func:`dinokit.config_io.add_flags`): its types, defaults,
choices and help texts.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..config_io import add_flags, flag_values
from ..embed import EmbedConfig, run_embed


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
    add_flags(parser, EmbedConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed, print a one-line summary."""
    summary, _ = run_embed(EmbedConfig(**flag_values(args, EmbedConfig)))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(summary.line())
    return 0
