"""Image features from a backbone's token groups.

``last4`` is the feature of DINO's linear evaluation (Caron et al., 2021,
``eval_linear.py``: the CLS tokens of the last 4 blocks, each through the final norm,
concatenated); ``mean`` averages the patch tokens (registers excluded, Darcet et al., 2024).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import Features

FEATURES: tuple[str, ...] = ("cls", "mean", "cls+mean", "last4")
"""Feature names accepted by :func:`pool_features`."""

_LAST_BLOCKS = 4


def check_feature(feature: str) -> str:
    """``feature`` if it is one of :data:`FEATURES`, else a ``ValueError`` listing them."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; choose one of {', '.join(FEATURES)}")
    return feature


def blocks_needed(feature: str) -> int:
    """How many last-block CLS tokens ``forward_features`` must return for ``feature``."""
    return _LAST_BLOCKS if check_feature(feature) == "last4" else 0


def feature_dim(feature: str, embed_dim: int) -> int:
    """Width of ``feature`` for a backbone of token width ``embed_dim``."""
    factor = {"cls": 1, "mean": 1, "cls+mean": 2, "last4": _LAST_BLOCKS}
    return factor[check_feature(feature)] * embed_dim


def pool_features(features: Features, feature: str, *, normalize: bool = True) -> Tensor:
    """One float32 vector per image.

    Args:
        features: A ``forward_features`` output (with ``n_last_blocks >= 4`` for ``last4``).
        feature: ``cls`` (B, D), ``mean`` of the patch tokens (B, D), ``cls+mean`` (B, 2D)
            or ``last4`` (B, 4D).
        normalize: L2-normalise each vector (cosine similarity = dot product).

    Returns:
        (B, D') float32 vectors, D' = :func:`feature_dim`.
    """
    check_feature(feature)
    if feature == "cls":
        out = features.cls
    elif feature == "mean":
        out = features.patch_tokens.mean(dim=1)
    elif feature == "cls+mean":
        out = torch.cat([features.cls, features.patch_tokens.mean(dim=1)], dim=-1)
    else:
        blocks = features.block_cls
        if blocks is None or blocks.shape[1] < _LAST_BLOCKS:
            raise ValueError("feature 'last4' needs forward_features(x, n_last_blocks=4)")
        out = blocks[:, -_LAST_BLOCKS:].flatten(1)
    out = out.float()
    return F.normalize(out, dim=-1) if normalize else out
