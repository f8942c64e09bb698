"""Batched feature extraction: images -> L2-normalised backbone features.

Puts the model in eval mode, runs under ``inference_mode`` and the given autocast, and
sets aside unreadable images (they never stop a run).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from .data import EvalTransform, Failed, ImageDataset, ImageRecord, collate_skip_failed
from .models import Backbone

logger = logging.getLogger(__name__)


@dataclass
class ExtractedFeatures:
    """Features of the images that could be read.

    Attributes:
        features: (N, D) float32 features (L2-normalised when asked).
        indices: (N,) positions of those images in the input list.
        failed: Images that could not be read, with reasons.
    """

    features: Tensor
    indices: Tensor
    failed: list[Failed] = field(default_factory=list)


def eval_transform_for(
    backbone: Backbone, *, mode: str | None = None, size: int | None = None
) -> EvalTransform:
    """The evaluation transform that goes with a backbone's preprocessing config."""
    pre = backbone.config.preprocessing
    return EvalTransform(
        mode or pre.mode,
        size or pre.size,
        mean=pre.mean,
        std=pre.std,
        interpolation=pre.interpolation,
        patch_size=backbone.patch_size,
        crop_pct=pre.crop_pct,
    )


@torch.inference_mode()
def extract_features(
    backbone: Backbone,
    images: Sequence[ImageRecord],
    *,
    transform: EvalTransform | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | None = None,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
    normalize: bool = True,
    generator: torch.Generator | None = None,
) -> ExtractedFeatures:
    """CLS features of every readable image.

    Args:
        backbone: The model (switched to eval mode for the call, then restored).
        images: The images, e.g. ``list_images(folder).records``.
        transform: Preprocessing (default: the backbone's own, see :func:`eval_transform_for`).
        batch_size: Images per forward pass.
        workers: ``DataLoader`` worker processes.
        device: Where to run (default: the backbone's device).
        autocast: A mixed-precision context; features are returned in float32.
        normalize: L2-normalise the features (cosine similarity = dot product).
        generator: Where the loader draws its workers' base seed (default: a private
            generator). Extraction is deterministic; the global RNG is never drawn from, so
            a training run that extracts features in between steps stays reproducible.
    """
    transform = transform or eval_transform_for(backbone)
    device = device or next(backbone.parameters()).device
    loader = DataLoader(
        ImageDataset(images, transform, draft_size=transform.draft_size),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_skip_failed,
        pin_memory=device.type == "cuda",
        generator=generator if generator is not None else torch.Generator(),
    )
    was_training = backbone.training
    backbone.eval()
    feats: list[Tensor] = []
    kept: list[Tensor] = []
    failed: list[Failed] = []
    try:
        for batch in loader:
            failed.extend(batch.failed)
            if not isinstance(batch.images, Tensor):
                continue
            with autocast or contextlib.nullcontext():
                out = backbone(batch.images.to(device, non_blocking=True))
            out = out.float()
            feats.append((F.normalize(out, dim=-1) if normalize else out).cpu())
            kept.append(batch.indices)
    finally:
        backbone.train(was_training)
    dim = backbone.embed_dim
    return ExtractedFeatures(
        features=torch.cat(feats) if feats else torch.empty(0, dim),
        indices=torch.cat(kept) if kept else torch.empty(0, dtype=torch.long),
        failed=failed,
    )
