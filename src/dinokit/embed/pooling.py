"""Image vectors pooled from a backbone's token groups (the ``feature`` of an embedding).

``last4`` is the feature of DINO's linear evaluation (Caron et al., 2021,
``eval_linear.py``: the CLS tokens of the last 4 blocks, each through the final norm,
concatenated); ``mean`` averages the patch tokens (registers excluded, Darcet et al., 2024).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import Features

POOLINGS: tuple[str, ...] = ("cls", "mean", "cls+mean", "last4")
"""How an image's tokens become its vector: the values of ``feature`` (``--feature``)."""

_LAST_BLOCKS = 4


def blocks_needed(pooling: str) -> int:
    """How many last-block CLS tokens ``forward_features`` must return for ``pooling``."""
    return _LAST_BLOCKS if pooling == "last4" else 0


def pooled_dim(pooling: str, embed_dim: int) -> int:
    """Width of the vector ``pooling`` makes from tokens of width ``embed_dim``."""
    factor = {"cls": 1, "mean": 1, "cls+mean": 2, "last4": _LAST_BLOCKS}
    return factor[pooling] * embed_dim


def pool_tokens(tokens: Features, pooling: str, *, normalize: bool = True) -> Tensor:
    """One float32 vector per image.

    Args:
        tokens: A ``forward_features`` output (with ``n_last_blocks >= 4`` for ``last4``).
        pooling: One of :data:`POOLINGS`: ``cls`` (B, D), ``mean`` of the patch tokens
            (B, D), ``cls+mean`` (B, 2D) or ``last4`` (B, 4D).
        normalize: L2-normalise each vector (cosine similarity = dot product).

    Returns:
        (B, D') float32 vectors, D' = :func:`pooled_dim`.
    """
    if pooling == "cls":
        out = tokens.cls
    elif pooling == "mean":
        out = tokens.patch_tokens.mean(dim=1)
    elif pooling == "cls+mean":
        out = torch.cat([tokens.cls, tokens.patch_tokens.mean(dim=1)], dim=-1)
    else:  # last4 (the config checked the name)
        blocks = tokens.block_cls
        if blocks is None or blocks.shape[1] < _LAST_BLOCKS:
            raise ValueError("feature 'last4' needs forward_features(x, n_last_blocks=4)")
        out = blocks[:, -_LAST_BLOCKS:].flatten(1)
    out = out.float()
    return F.normalize(out, dim=-1) if normalize else out
