"""The ``dinokit`` command: parses arguments, builds a config, calls one library function.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args)``.
Nothing here touches the network or loads a model while building the parser.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from . import (
    attention_cmd,
    cluster_cmd,
    duplicates_cmd,
    embed_cmd,
    env_cmd,
    evaluate_cmd,
    export_cmd,
    map_cmd,
    models_cmd,
    report_cmd,
    sample_cmd,
    search_cmd,
    serve_cmd,
    train_cmd,
)

_COMMANDS = (
    train_cmd,
    embed_cmd,
    export_cmd,
    models_cmd,
    env_cmd,
    sample_cmd,
    map_cmd,
    report_cmd,
    attention_cmd,
    search_cmd,
    duplicates_cmd,
    cluster_cmd,
    evaluate_cmd,
    serve_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dinokit",
        description="Fine-tune DINO-family ViTs on your images and use their embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"dinokit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dinokit`` and ``python -m dinokit``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt as exc:
        logging.getLogger("dinokit").error("interrupted%s", f": {exc}" if str(exc) else "")
        return 130
    except (OSError, ValueError, RuntimeError) as exc:
        logging.getLogger("dinokit").error("%s", exc)
        return 2
    return code
