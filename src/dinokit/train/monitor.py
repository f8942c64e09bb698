"""kNN monitor: DINO's weighted kNN accuracy of the teacher during training.

Teacher CLS features (L2-normalised, the backbone's evaluation preprocessing) of a labelled
train folder vote for the labels of a labelled val folder: k = 20, T = 0.07
(facebookresearch/dino ``eval_knn.py``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from ..data import list_images
from ..evaluation import knn_accuracy
from ..features import extract_features
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
        self, train_dir: str, val_dir: str, *, k: int = 20, batch_size: int = 64, workers: int = 0
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
        kwargs: dict[str, Any] = {
            "batch_size": self.batch_size,
            "workers": self.workers,
            "device": device,
            "autocast": autocast,
        }
        train = extract_features(backbone, self.train, **kwargs)
        val = extract_features(backbone, self.val, **kwargs)
        accuracy = knn_accuracy(
            train.features,
            self._labels(self.train, train.indices),
            val.features,
            self._labels(self.val, val.indices),
            k=self.k,
            num_classes=len(self.class_index),
        )
        return accuracy[self.k]
