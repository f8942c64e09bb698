"""Rows describing the registered backbones (for ``dinokit models``)."""

from __future__ import annotations

from typing import Any

import torch

from .backbone import build_vit
from .registry import get_config, list_backbones
from .weights.hub import find_local_weights


def count_parameters(name: str) -> int:
    """Parameters of a backbone, counted on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        vit = build_vit(get_config(name))
    return sum(p.numel() for p in vit.parameters())


def describe_backbones(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per backbone: architecture, sizes, parameters, official file and local copy.

    ``fp32_gb`` is the memory of the weights alone in float32 (parameters x 4 bytes; half
    of it in bfloat16); activations come on top.
    """
    rows = []
    for name in names or list_backbones():
        cfg = get_config(name)
        local = find_local_weights(cfg)
        params = count_parameters(name)
        rows.append(
            {
                "name": name,
                "architecture": cfg.architecture,
                "embed_dim": cfg.embed_dim,
                "patch_size": cfg.patch_size,
                "image_size": cfg.preprocessing.size,
                "params_m": round(params / 1e6, 2),
                "fp32_gb": round(params * 4 / 1e9, 2),
                "weights_file": cfg.weights.file_name if cfg.weights else None,
                "local_path": str(local) if local else None,
                "licence": cfg.weights.licence if cfg.weights else None,
            }
        )
    return rows
