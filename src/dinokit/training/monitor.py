"""kNN monitor: DINO's weighted kNN accuracy of the teacher during training, its baselines,
and the label-free check of runs without labels.

Teacher CLS features (L2-normalised, the backbone's evaluation preprocessing) of a labelled
train folder vote for the labels of a labelled val folder: k = 20, T = 0.07
(facebookresearch/dino ``eval_knn.py``). Two baselines put the number in context: the
raw pixels of the same folders (32 px, as ``dinokit evaluate``'s row) and, when fine-tuning,
the same architecture with random weights.

Without labelled folders, :class:`LabelFreeCheck` scores the teacher's CLS features of a
fixed sample of the training images (effective rank, uniformity): an alarm against collapse
(:func:`label_free_alarm`), which cannot tell a better model from a worse one.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from ..data import ImageRecord, list_images
from ..data.tiny import tiny_images
from ..dino import collapse_signature
from ..embed import Embedder
from ..evaluation import (
    BASELINE_SIZE,
    DEFAULT_K,
    QualityScore,
    baseline_vectors,
    knn_accuracy,
    label_scores,
    quality_score,
)
from ..models import Backbone, BackboneConfig, random_backbone
from .metrics import LabelFreePoint

logger = logging.getLogger(__name__)


class KnnMonitor:
    """Holds the two labelled image lists; :meth:`evaluate` returns top-1 accuracy.

    Args:
        train_dir: Labelled folder (``class/image``) of reference images.
        val_dir: Labelled folder of images to classify.
        k: Neighbours (DINO's monitor uses 20).
        batch_size: Images per forward pass.
        workers: Loader worker processes.
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str,
        *,
        k: int = DEFAULT_K,
        batch_size: int = 64,
        workers: int = 0,
    ) -> None:
        self.train = [r for r in list_images([train_dir]).records if r.label is not None]
        self.val = [r for r in list_images([val_dir]).records if r.label is not None]
        if not self.train or not self.val:
            raise ValueError(
                f"the kNN monitor needs labelled folders (class/image): {train_dir} has "
                f"{len(self.train)} labelled images, {val_dir} has {len(self.val)}"
            )
        classes = sorted({r.label for r in self.train if r.label is not None})
        self.class_index = {name: i for i, name in enumerate(classes)}
        self.k = k
        self.batch_size = batch_size
        self.workers = workers
        #: Label-free score of the reference features at the last :meth:`evaluate` call.
        self.last_quality: dict[str, float] | None = None
        # The monitor's own generator: its loaders must not draw from the global RNG,
        # or the drop-path masks after a measurement would differ from a resumed run's.
        self.generator = torch.Generator().manual_seed(0)

    def _labels(self, records: list[Any], indices: torch.Tensor) -> torch.Tensor:
        # Val classes absent from train get label -1: never predicted, counted as wrong.
        return torch.tensor([self.class_index.get(records[i].label, -1) for i in indices.tolist()])

    def evaluate(
        self,
        backbone: Backbone,
        *,
        device: torch.device,
        autocast: contextlib.AbstractContextManager[Any] | None = None,
    ) -> float:
        """Top-1 weighted kNN accuracy (fraction) of ``backbone`` features; also keeps the
        label-free score of its reference features in :attr:`last_quality`."""
        accuracy, train_features = self._accuracy(backbone, device=device, autocast=autocast)
        if len(train_features) >= 2:
            self.last_quality = quality_score(train_features).to_dict()
            logger.info(
                "teacher effective rank %.2f, uniformity %.3f (label-free)",
                self.last_quality["effective_rank"],
                self.last_quality["uniformity"],
            )
        return accuracy

    def raw_pixel_baseline(self) -> float:
        """Top-1 weighted kNN accuracy (fraction) of the folders' raw pixels.

        The vectors of ``dinokit evaluate``'s raw-pixel row: each image's centre square at
        32 x 32, centred by the reference images' mean and L2-normalised.
        """
        train_images, train = tiny_images(self.train, BASELINE_SIZE, workers=self.workers or None)
        val_images, val = tiny_images(self.val, BASELINE_SIZE, workers=self.workers or None)
        if not train or not val:
            raise ValueError("the raw-pixel baseline found no readable labelled image")
        train_x, val_x = baseline_vectors(train_images, val_images)
        knn, _ = label_scores(
            train_x,
            [str(r.label) for r in train],
            val_x,
            [str(r.label) for r in val],
            k=[self.k],
        )
        return knn[self.k]

    def random_init_baseline(
        self,
        config: BackboneConfig,
        *,
        seed: int,
        device: torch.device,
        autocast: contextlib.AbstractContextManager[Any] | None = None,
    ) -> float:
        """Top-1 weighted kNN accuracy (fraction) of ``config``'s architecture with random
        weights (initialised from ``seed``; the global RNG is left as it was)."""
        backbone = random_backbone(config, seed=seed).to(device)
        accuracy, _ = self._accuracy(backbone, device=device, autocast=autocast)
        return accuracy

    def _accuracy(
        self,
        backbone: Backbone,
        *,
        device: torch.device,
        autocast: contextlib.AbstractContextManager[Any] | None,
    ) -> tuple[float, torch.Tensor]:
        """Top-1 kNN accuracy and the (N, D) reference features of ``backbone``."""
        embedder = _embedder(self, backbone, device, autocast)
        train, val = embedder.embed_all(self.train), embedder.embed_all(self.val)
        train_features = torch.from_numpy(train.vectors)
        accuracy = knn_accuracy(
            train_features,
            self._labels(self.train, torch.from_numpy(train.indices)),
            torch.from_numpy(val.vectors),
            self._labels(self.val, torch.from_numpy(val.indices)),
            k=self.k,
            num_classes=len(self.class_index),
        )
        return accuracy[self.k], train_features


LABEL_FREE_SAMPLE = 1000
"""Training images the label-free check embeds (a fixed, seeded sample)."""

COLLAPSE_RANK_FLOOR = 2.0
"""An effective rank below this is collapse whatever the start (docs/using-embeddings.md:
the features squeezed into one direction scored 1.95, with kNN down from 28.8% to 16.6%)."""

COLLAPSE_RANK_FRACTION = 0.1
"""...and so is one below this fraction of the start's. A healthy run from scratch fell to
about half its start (16.6 -> 7.9 while kNN rose): a falling rank early on is normal."""

COLLAPSE_UNIFORMITY_FRACTION = 0.25
"""Uniformity above this fraction of the start's (towards 0, total collapse) is collapse:
the one-direction features measured -0.66 against -1.12 for healthy ones, which moved by
at most 0.03 as their rank halved."""


class LabelFreeCheck:
    """The teacher's label-free scores on a fixed sample of the training images.

    Args:
        records: The training images.
        sample: At most this many of them, drawn once with a generator seeded by ``seed``
            (the global RNG is never drawn from), kept in their listing order.
        seed: The run's seed.
        batch_size: Images per forward pass.
        workers: Loader worker processes.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        *,
        sample: int = LABEL_FREE_SAMPLE,
        seed: int = 0,
        batch_size: int = 64,
        workers: int = 0,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        picks = torch.randperm(len(records), generator=generator)[:sample].sort().values
        self.records = [records[i] for i in picks.tolist()]
        self.batch_size = batch_size
        self.workers = workers
        self.generator = torch.Generator().manual_seed(seed)

    def measure(
        self,
        backbone: Backbone,
        *,
        device: torch.device,
        autocast: contextlib.AbstractContextManager[Any] | None = None,
    ) -> QualityScore | None:
        """Effective rank and uniformity of ``backbone``'s CLS features of the sample
        (None when fewer than 2 images could be embedded)."""
        embedder = _embedder(self, backbone, device, autocast)
        features = embedder.embed_all(self.records).vectors
        return quality_score(features) if len(features) >= 2 else None


def label_free_alarm(start: LabelFreePoint, now: LabelFreePoint) -> str | None:
    """Why ``now`` looks collapsed relative to ``start``, or None when it does not.

    Only the extremes raise it: an effective rank below ``max(2, start / 10)``
    (:data:`COLLAPSE_RANK_FLOOR`, :data:`COLLAPSE_RANK_FRACTION`), or a uniformity above a
    quarter of the start's (:data:`COLLAPSE_UNIFORMITY_FRACTION`, 0 being every image the
    same vector).
    """
    rank_floor = max(COLLAPSE_RANK_FLOOR, COLLAPSE_RANK_FRACTION * start.effective_rank)
    if now.effective_rank < rank_floor:
        return (
            f"effective rank {now.effective_rank:.2f} is below {rank_floor:.2f} "
            f"(start {start.effective_rank:.2f})"
        )
    uniformity_ceiling = COLLAPSE_UNIFORMITY_FRACTION * start.uniformity
    if start.uniformity < 0 and now.uniformity > uniformity_ceiling:
        return (
            f"uniformity {now.uniformity:.3f} is above {uniformity_ceiling:.3f} "
            f"(start {start.uniformity:.3f}; 0 means every image gets the same vector)"
        )
    return None


class CollapseWatch:
    """Warns when a collapse signature persists (one step is a hint, many are a diagnosis).

    The two known signatures (:func:`dinokit.dino.collapse_signature`): the loss sitting at
    ``ln(out_dim)`` with a uniform teacher, or the teacher entropy going to 0.

    Args:
        out_dim: Number of prototypes.
        patience: Consecutive steps showing a signature before warning.
    """

    def __init__(self, out_dim: int, *, patience: int = 100) -> None:
        self.out_dim = out_dim
        self.patience = patience
        self.streak = 0
        self.warned: set[str] = set()
        self._last: str | None = None

    def update(self, stats: dict[str, float], step: int) -> str | None:
        """Feed one step's loss statistics; returns the signature when it is warned about."""
        signature = collapse_signature(stats, self.out_dim)
        self.streak = (
            self.streak + 1
            if signature is not None and signature == self._last
            else (1 if signature is not None else 0)
        )
        self._last = signature
        if signature is None or self.streak < self.patience or signature in self.warned:
            return None
        self.warned.add(signature)
        hint = (
            "every image gets the same flat output: raise --lr warm-up, lower --teacher-temp"
            if signature == "uniform"
            else "one prototype wins for every image: lower --lr or --momentum closer to 1"
        )
        logger.warning(
            "possible collapse (%s) for %d steps at step %d: loss %.3f, ln(out_dim) %.3f, "
            "teacher entropy %.3f; %s",
            signature,
            self.streak,
            step,
            stats["loss"],
            math.log(self.out_dim),
            stats["teacher_entropy"],
            hint,
        )
        return signature


def _embedder(
    owner: KnnMonitor | LabelFreeCheck,
    backbone: Backbone,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[Any] | None,
) -> Embedder:
    """The batched extractor of a measurement: ``backbone`` in evaluation mode on
    ``device``, with the owner's batch, workers and own generator (never the global RNG)."""
    return Embedder(
        backbone,
        batch_size=owner.batch_size,
        workers=owner.workers,
        device=str(device),
        autocast=autocast,
        generator=owner.generator,
    )
