"""The :class:`Embedder`: a model, its preprocessing and a feature, turning image files into
vectors.

One object holds everything that decides what a vector means (the backbone and its weights,
the preprocessing mode and size, the feature, normalisation), so embedding a query image
"the same way" as a folder is ``Embedder.from_metadata(embeddings.metadata)``.
Speed: a ``DataLoader`` with worker processes decodes (JPEG draft mode) while the model runs,
pinned memory on CUDA, ``inference_mode`` and autocast in the resolved precision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import DataLoader

from .._version import __version__
from ..data import EvalTransform, Failed, ImageDataset, ImageRecord, Sample
from ..data.preprocess import MODES
from ..models import Backbone
from ..runtime.device import resolve_device
from ..runtime.precision import autocast_context, resolve_precision
from .model_record import build_backbone, fingerprint, model_record, rebuild_backbone
from .pooling import blocks_needed, check_feature, feature_dim, pool_features

logger = logging.getLogger(__name__)

METADATA_VERSION = 1
"""Version of the embeddings metadata layout written by :meth:`Embedder.metadata`."""

RECIPE_KEYS: tuple[str, ...] = (
    "fingerprint",
    "transform",
    "feature",
    "branch",
    "normalize",
    "patch_tokens",
    "dim",
)
"""Metadata entries that must match for two sets of embeddings to be comparable."""


@dataclass
class EmbeddedBatch:
    """Vectors of one loader batch.

    Attributes:
        indices: (B,) positions of the embedded images in the input sequence.
        vectors: (B, D) float32 vectors.
        failed: Images of the batch that could not be read.
        patch_tokens: (N_i, D_tok) float32 patch tokens of each image, when asked.
        grids: (H_i / p, W_i / p) patch grid of each image, when patch tokens are asked.
    """

    indices: NDArray[np.int64]
    vectors: NDArray[np.float32]
    failed: list[Failed]
    patch_tokens: list[NDArray[np.float32]] | None = None
    grids: list[tuple[int, int]] | None = None


def collate_by_shape(
    batch: Sequence[Sample[Tensor] | Failed],
) -> tuple[list[tuple[Tensor, Tensor]], list[Failed]]:
    """Groups the readable images of a batch by shape (``native`` mode varies per image).

    Returns:
        ``[(indices (b,), images (b, 3, H, W)), ...]`` one entry per distinct shape, in order
        of first appearance, and the failures.
    """
    groups: dict[tuple[int, ...], list[Sample[Tensor]]] = {}
    failed: list[Failed] = []
    for item in batch:
        if isinstance(item, Failed):
            failed.append(item)
        else:
            groups.setdefault(tuple(item.image.shape), []).append(item)
    stacked = [
        (
            torch.tensor([s.index for s in samples], dtype=torch.long),
            torch.stack([s.image for s in samples]),
        )
        for samples in groups.values()
    ]
    return stacked, failed


class Embedder:
    """A backbone, its preprocessing and a feature choice: image files -> vectors.

    Args:
        model: A registered name, ``timm:<name>``, a run folder, a weights file (anything
            :func:`dinokit.load` takes), or a :class:`~dinokit.models.Backbone` (then the
            metadata can rebuild it only if its ``source`` is a file).
        weights: With a name: ``None`` (official weights), ``"none"`` (seeded random
            initialisation) or a weights file.
        branch: ``teacher`` (default) or ``student`` for files holding both.
        preprocess: ``center-crop``, ``resize``, ``letterbox`` or ``native`` (default: the
            model's own mode).
        size: Input size (default: the model's own).
        feature: ``cls``, ``mean``, ``cls+mean`` or ``last4``.
        normalize: L2-normalise the vectors.
        patch_tokens: Also return each image's patch tokens (dense uses).
        batch_size: Images per forward pass.
        workers: ``DataLoader`` processes (0 decodes in this process).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast; vectors are float32).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``...
    """

    def __init__(
        self,
        model: str | Path | Backbone,
        *,
        weights: str | Path | None = None,
        branch: str = "teacher",
        preprocess: str | None = None,
        size: int | None = None,
        feature: str = "cls",
        normalize: bool = True,
        patch_tokens: bool = False,
        batch_size: int = 64,
        workers: int = 0,
        precision: str = "auto",
        device: str | torch.device = "auto",
    ) -> None:
        if branch not in ("teacher", "student"):
            raise ValueError(f"branch must be teacher or student, got {branch!r}")
        if preprocess is not None and preprocess not in MODES:
            raise ValueError(f"unknown preprocessing {preprocess!r}; choose one of {MODES}")
        if batch_size < 1 or workers < 0:
            raise ValueError(f"batch size must be >= 1 and workers >= 0 ({batch_size}, {workers})")
        self.feature = check_feature(feature)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        if isinstance(model, Backbone):
            self.backbone = model.eval().to(self.device)
            # An in-memory model is recorded only when it came from a file.
            source = Path(model.source)
            spec: str | Path | None = source if source.is_file() else None
        else:
            self.backbone = build_backbone(
                model, weights=weights, branch=branch, device=self.device
            )
            spec = model
        self._record = model_record(spec, weights=weights, branch=branch, backbone=self.backbone)
        self.branch = branch
        self.normalize = normalize
        self.patch_tokens = patch_tokens
        self.batch_size = batch_size
        self.workers = workers
        self.transform = _transform_for(self.backbone, mode=preprocess, size=size)
        self._fingerprint: str | None = None
        self._autocast = autocast_context(self.precision, self.device)

    @classmethod
    def from_metadata(
        cls,
        metadata: dict[str, Any],
        *,
        batch_size: int = 64,
        workers: int = 0,
        precision: str = "auto",
        device: str | torch.device = "auto",
    ) -> Embedder:
        """The embedder that made a set of embeddings (``Embeddings.metadata``), offline.

        Raises:
            RecordedModelError: The recorded model cannot be loaded, or its weights changed
                since (fingerprint mismatch).
            ValueError: The metadata is not a dinokit embeddings recipe.
        """
        from .model_record import RecordedModelError

        missing = [k for k in ("model", "transform", "feature", "normalize") if k not in metadata]
        if missing:
            raise ValueError(
                f"embeddings metadata lacks {', '.join(missing)}: not made by dinokit embed; "
                "re-embed the images with dinokit embed"
            )
        record = dict(metadata["model"])
        self = cls.__new__(cls)
        self.feature = check_feature(str(metadata["feature"]))
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.backbone = rebuild_backbone(record, device=self.device)
        self._record = record
        self.branch = str(record.get("branch") or metadata.get("branch") or "teacher")
        self.normalize = bool(metadata["normalize"])
        self.patch_tokens = bool(metadata.get("patch_tokens", False))
        self.batch_size = batch_size
        self.workers = workers
        self.transform = EvalTransform(**metadata["transform"])
        self._fingerprint = None
        self._autocast = autocast_context(self.precision, self.device)
        expected = metadata.get("fingerprint")
        if expected and expected != self.fingerprint:
            raise RecordedModelError(
                f"{record['model']} has changed since these embeddings were made (fingerprint "
                f"{expected}, now {self.fingerprint}); re-embed with dinokit embed --overwrite"
            )
        return self

    @property
    def dim(self) -> int:
        """Vector width D."""
        return feature_dim(self.feature, self.backbone.embed_dim)

    @property
    def fingerprint(self) -> str:
        """Hash of the backbone's architecture and weights (see :func:`fingerprint`)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.backbone)
        return self._fingerprint

    def metadata(self) -> dict[str, Any]:
        """The recipe of the vectors, JSON-serialisable (``Embeddings.metadata`` entries)."""
        recipe = {
            "format_version": METADATA_VERSION,
            "dinokit_version": __version__,
            "model": dict(self._record),
            "fingerprint": self.fingerprint,
            "preprocess": self.transform.mode,
            "size": self.transform.size,
            "transform": self.transform.to_dict(),
            "feature": self.feature,
            "branch": self.branch,
            "normalize": self.normalize,
            "patch_tokens": self.patch_tokens,
            "dim": self.dim,
            "precision": self.precision,
        }
        # As read back from a file (tuples become lists), so recipes compare equal.
        plain: dict[str, Any] = json.loads(json.dumps(recipe))
        return plain

    def embed_files(self, paths: Sequence[str | Path]) -> tuple[NDArray[np.float32], list[Failed]]:
        """Vectors of image files.

        Args:
            paths: Image files (unreadable ones are reported, never raised).

        Returns:
            (n, D) float32 vectors of the n readable files, in input order, and the files
            that could not be read (``Failed.index`` is their position in ``paths``).
        """
        vectors: list[NDArray[np.float32]] = []
        order: list[NDArray[np.int64]] = []
        failed: list[Failed] = []
        for batch in self.iter_batches(paths):
            vectors.append(batch.vectors)
            order.append(batch.indices)
            failed.extend(batch.failed)
        if not vectors:
            return np.zeros((0, self.dim), dtype=np.float32), failed
        stacked = np.concatenate(vectors)
        return stacked[np.argsort(np.concatenate(order), kind="stable")], failed

    def iter_batches(
        self, images: Sequence[ImageRecord] | Sequence[str | Path]
    ) -> Iterator[EmbeddedBatch]:
        """Embed images batch by batch (the loader's order; memory stays flat).

        Args:
            images: Records from :func:`~dinokit.data.list_images` or plain paths.

        Yields:
            One :class:`EmbeddedBatch` per loader batch.
        """
        if len(images) == 0:
            return
        dataset: ImageDataset[Tensor] = ImageDataset(
            images, self.transform, draft_size=self.transform.draft_size
        )
        workers = min(self.workers, max(0, (len(images) - 1) // self.batch_size + 1))
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=workers,
            collate_fn=collate_by_shape,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )
        self.backbone.eval()
        with torch.inference_mode():
            for groups, failed in loader:
                yield self._embed_groups(groups, failed)

    def embed_tensor(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Vectors of a batch of preprocessed images.

        Args:
            images: (B, 3, H, W) normalised images (H, W multiples of the patch size).

        Returns:
            (B, D) float32 vectors on the CPU, and (B, N, D_tok) float32 patch tokens when
            the embedder keeps them (else ``None``).
        """
        x = images.to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast:
            features = self.backbone.forward_features(x, n_last_blocks=blocks_needed(self.feature))
            vectors = pool_features(features, self.feature, normalize=self.normalize)
        tokens = features.patch_tokens.float().cpu() if self.patch_tokens else None
        return vectors.cpu(), tokens

    def _embed_groups(
        self, groups: list[tuple[Tensor, Tensor]], failed: list[Failed]
    ) -> EmbeddedBatch:
        indices: list[Tensor] = []
        vectors: list[Tensor] = []
        tokens: list[NDArray[np.float32]] = []
        grids: list[tuple[int, int]] = []
        p = self.backbone.patch_size
        for group_indices, images in groups:
            out, patch = self.embed_tensor(images)
            indices.append(group_indices)
            vectors.append(out)
            if patch is not None:
                grid = (images.shape[-2] // p, images.shape[-1] // p)
                tokens.extend(t.numpy() for t in patch)
                grids.extend([grid] * len(patch))
        if not vectors:
            empty = np.zeros((0, self.dim), dtype=np.float32)
            return EmbeddedBatch(np.zeros(0, dtype=np.int64), empty, failed)
        return EmbeddedBatch(
            indices=torch.cat(indices).numpy().astype(np.int64),
            vectors=torch.cat(vectors).numpy(),
            failed=failed,
            patch_tokens=tokens if self.patch_tokens else None,
            grids=grids if self.patch_tokens else None,
        )


def _transform_for(backbone: Backbone, *, mode: str | None, size: int | None) -> EvalTransform:
    pre = backbone.config.preprocessing
    mode = mode or pre.mode
    size = size or pre.size
    p = backbone.patch_size
    if mode != "native" and size % p:
        lower, upper = max(p, size // p * p), (size // p + 1) * p
        raise ValueError(
            f"size {size} is not a multiple of the patch size {p} of "
            f"{backbone.config.name}; use {lower} or {upper}"
        )
    return EvalTransform(
        mode,
        size,
        mean=pre.mean,
        std=pre.std,
        interpolation=pre.interpolation,
        patch_size=p,
        crop_pct=pre.crop_pct,
    )
