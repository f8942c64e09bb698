"""``dinokit export``: a model as dinokit's own file, a timm state dict, ONNX or transformers."""

from __future__ import annotations

import argparse
from typing import Any

_FORMATS = ("dinokit", "timm", "onnx", "transformers")


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="write a model as a dinokit .safetensors, a timm state dict, ONNX or transformers",
        description=(
            "dinokit: .safetensors with the config and preprocessing in its header "
            "(dinokit.load reads it offline). timm: the timm / official DINO key layout "
            "(.safetensors, .pth, .pt or .bin) for timm.create_model(..., "
            "pretrained_cfg_overlay=dict(file=...)). onnx: inputs 'images' (B, 3, S, S), "
            "outputs 'cls' and 'patch_tokens', dynamic batch axis, checked against PyTorch "
            "when onnxruntime is installed. transformers: a folder (config.json, "
            "model.safetensors, preprocessor_config.json) for "
            "transformers.AutoModel.from_pretrained(DIR): ViTModel (DINO v1), Dinov2Model, "
            "Dinov2WithRegistersModel."
        ),
    )
    parser.add_argument("model", help="registered name, run folder, exported file or weights file")
    parser.add_argument(
        "--out", required=True, help="destination file (a folder for --format transformers)"
    )
    parser.add_argument(
        "--format", choices=_FORMATS, default="dinokit", help="file format (default dinokit)"
    )
    parser.add_argument(
        "--branch",
        choices=("teacher", "student"),
        default=None,
        help="for run folders and checkpoints: which network (default teacher)",
    )
    parser.add_argument(
        "--weights", default=None, help="with a registered name: a weights file, or 'none'"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="ONNX input side (default: the model's size)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export and say where it went."""
    from ..models.export import export

    path = export(
        args.model,
        args.out,
        format=args.format,
        branch=args.branch,
        weights=args.weights,
        overwrite=args.overwrite,
        size=args.size,
    )
    print(f"wrote {path} ({args.format} format)")
    return 0
