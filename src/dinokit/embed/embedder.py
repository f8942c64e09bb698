"""The :class:`Embedder`: the one way to run a backbone over batches of images.

One object holds everything that decides what a vector means (the backbone and its weights,
the preprocessing mode and size, the pooling, normalisation), so embedding a query image
"the same way" as a folder is ``Embedder.from_metadata(embeddings.metadata)``; the embed
pipeline, search, serving and training's kNN monitor all run their images through it.
Speed: a ``DataLoader`` with worker processes decodes (JPEG draft mode) while the model runs,
pinned memory on CUDA, ``inference_mode`` and autocast in the resolved precision. Unreadable
images are set aside with their reason; they never stop a run.
"""

from __future__ import annotations

import contextlib
import json
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
from ..models import Backbone
from ..runtime.device import resolve_device
from ..runtime.machine import default_workers
from ..runtime.precision import autocast_context, resolve_precision
from .config import EmbedConfig
from .model_record import (
    RecordedModelError,
    build_backbone,
    fingerprint,
    model_record,
    rebuild_backbone,
)
from .pooling import blocks_needed, pool_tokens, pooled_dim

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
    """A backbone, its preprocessing and a pooling: images -> vectors.

    Args:
        model: A registered name, ``timm:<name>``, a run folder, a weights file (anything
            :func:`dinokit.load` takes), or a :class:`~dinokit.models.Backbone` in memory
            (then the metadata can rebuild it only if its ``source`` is a file).
        autocast: A mixed-precision context to run under instead of the one ``precision``
            resolves to (a training run's own); vectors are float32 either way.
        generator: Where the loader draws its workers' base seed (default: a private
            generator). The global RNG is never drawn from, so a training run that embeds
            images between steps stays reproducible.
        **options: :class:`EmbedConfig` fields; those from ``weights`` to ``device`` make
            the embedder (``workers``: ``None`` is all cores but one, 0 decodes in this
            process), the others (``inputs``, ``out``...) are the run's and unused here.

    Raises:
        ValueError: An option outside its choices (see :class:`EmbedConfig`), or a size
            that is not a multiple of the patch size.
    """

    def __init__(
        self,
        model: str | Path | Backbone,
        *,
        autocast: contextlib.AbstractContextManager[Any] | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> None:
        config = EmbedConfig(model=model, **options)
        self.device = resolve_device(config.device)
        if isinstance(model, Backbone):
            self.backbone = model.to(self.device)
            # An in-memory model is recorded only when it came from a file.
            source = Path(model.source)
            spec: str | Path | None = source if source.is_file() else None
        else:
            self.backbone = build_backbone(
                model, weights=config.weights, branch=config.branch, device=self.device
            )
            spec = model
        self._record = model_record(
            spec, weights=config.weights, branch=config.branch, backbone=self.backbone
        )
        self._fingerprint: str | None = None
        self.transform = transform_for(self.backbone, mode=config.preprocess, size=config.size)
        self.precision = resolve_precision(config.precision, self.device)
        self._autocast = autocast or autocast_context(self.precision, self.device)
        self.generator = generator
        self.feature = config.feature
        self.branch = config.branch
        self.normalize = config.normalize
        self.patch_tokens = config.patch_tokens
        self.batch_size = config.batch_size
        self.workers = default_workers(cap=8) if config.workers is None else config.workers

    @classmethod
    def from_metadata(
        cls, metadata: dict[str, Any], *, workers: int = 0, **options: Any
    ) -> Embedder:
        """The embedder that made a set of embeddings (``Embeddings.metadata``), offline.

        Args:
            metadata: The embeddings' metadata (model record, transform, feature...).
            workers: Loader processes (0: a few query images decode in this process).
            **options: ``batch_size``, ``precision``, ``device``, ``autocast``,
                ``generator`` (as for :class:`Embedder`).

        Raises:
            RecordedModelError: The recorded model cannot be loaded, or its weights changed
                since (fingerprint mismatch).
            ValueError: The metadata is not a dinokit embeddings recipe.
        """
        missing = [k for k in ("model", "transform", "feature", "normalize") if k not in metadata]
        if missing:
            raise ValueError(
                f"embeddings metadata lacks {', '.join(missing)}: not made by dinokit embed; "
                "re-embed the images with dinokit embed"
            )
        record = dict(metadata["model"])
        device = resolve_device(options.get("device", EmbedConfig.device))
        self = cls(
            rebuild_backbone(record, device=device),
            feature=str(metadata["feature"]),
            normalize=bool(metadata["normalize"]),
            patch_tokens=bool(metadata.get("patch_tokens", False)),
            branch=str(record.get("branch") or metadata.get("branch") or EmbedConfig.branch),
            workers=workers,
            **options,
        )
        # The recipe as recorded: the model's own record and every preprocessing setting.
        self._record = record
        self.transform = EvalTransform(**metadata["transform"])
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
        return pooled_dim(self.feature, self.backbone.embed_dim)

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

    def embed_files(
        self, paths: Sequence[str | Path] | Sequence[ImageRecord]
    ) -> tuple[NDArray[np.float32], list[Failed]]:
        """Vectors of image files.

        Args:
            paths: Image files or records (unreadable ones are reported, never raised).

        Returns:
            (n, D) float32 vectors of the n readable files, in input order, and the files
            that could not be read (``Failed.index`` is their position in ``paths``).
        """
        embedded = self.embed_all(paths)
        return embedded.vectors, embedded.failed

    def embed_all(self, images: Sequence[ImageRecord] | Sequence[str | Path]) -> EmbeddedBatch:
        """Every readable image's vector, in input order, as one :class:`EmbeddedBatch`."""
        batches = list(self.iter_batches(images))
        if not batches:
            return _empty_batch(self.dim, [])
        return EmbeddedBatch(
            indices=np.concatenate([b.indices for b in batches]),
            vectors=np.concatenate([b.vectors for b in batches]),
            failed=[f for b in batches for f in b.failed],
        )

    def iter_batches(
        self, images: Sequence[ImageRecord] | Sequence[str | Path]
    ) -> Iterator[EmbeddedBatch]:
        """Embed images batch by batch, in input order (memory stays flat).

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
            generator=self.generator if self.generator is not None else torch.Generator(),
        )
        for groups, failed in loader:
            yield self._embed_groups(groups, failed)

    def embed_tensor(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Vectors of a batch of preprocessed images (the backbone in eval mode meanwhile).

        Args:
            images: (B, 3, H, W) normalised images (H, W multiples of the patch size).

        Returns:
            (B, D) float32 vectors on the CPU, and (B, N, D_tok) float32 patch tokens when
            the embedder keeps them (else ``None``).
        """
        x = images.to(self.device, non_blocking=True)
        was_training = self.backbone.training
        try:
            with torch.inference_mode(), self._autocast:
                self.backbone.eval()
                tokens = self.backbone.forward_features(
                    x, n_last_blocks=blocks_needed(self.feature)
                )
                vectors = pool_tokens(tokens, self.feature, normalize=self.normalize)
        finally:
            self.backbone.train(was_training)
        patches = tokens.patch_tokens.float().cpu() if self.patch_tokens else None
        return vectors.cpu(), patches

    def _embed_groups(
        self, groups: list[tuple[Tensor, Tensor]], failed: list[Failed]
    ) -> EmbeddedBatch:
        """One loader batch, its shape groups embedded and put back in input order."""
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
            return _empty_batch(self.dim, failed)
        positions = torch.cat(indices).numpy().astype(np.int64)
        order = np.argsort(positions, kind="stable")
        return EmbeddedBatch(
            indices=positions[order],
            vectors=torch.cat(vectors).numpy()[order],
            failed=failed,
            patch_tokens=[tokens[i] for i in order] if self.patch_tokens else None,
            grids=[grids[i] for i in order] if self.patch_tokens else None,
        )


def _empty_batch(dim: int, failed: list[Failed]) -> EmbeddedBatch:
    empty = np.zeros((0, dim), dtype=np.float32)
    return EmbeddedBatch(np.zeros(0, dtype=np.int64), empty, failed)


def transform_for(
    backbone: Backbone, *, mode: str | None = None, size: int | None = None
) -> EvalTransform:
    """The evaluation transform of a backbone's preprocessing, with another mode or size.

    Raises:
        ValueError: ``size`` is not a multiple of the patch size (except in ``native`` mode).
    """
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
