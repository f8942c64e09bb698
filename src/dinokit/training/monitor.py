"""kNN monitor: DINO's weighted kNN accuracy of the teacher during training.

Teacher CLS features (L2-normalised, the backbone's evaluation preprocessing) of a labelled
train folder vote for the labels of a labelled val folder: k = 20, T = 0.07
(facebookresearch/dino ``eval_knn.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import torch

from ..data import list_images
from ..dino import collapse_signature
from ..embed import Embedder
from ..evaluation import DEFAULT_K, knn_accuracy, quality_score
from ..models import Backbone

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
        """Top-1 weighted kNN accuracy (fraction) of ``backbone`` features."""
        embedder = Embedder(
            backbone,
            batch_size=self.batch_size,
            workers=self.workers,
            device=str(device),
            autocast=autocast,
            generator=self.generator,
        )
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
        if len(train_features) >= 2:
            self.last_quality = quality_score(train_features).to_dict()
            logger.info(
                "teacher effective rank %.2f, uniformity %.3f (label-free)",
                self.last_quality["effective_rank"],
                self.last_quality["uniformity"],
            )
        return accuracy[self.k]


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
