"""Accuracy of labelled embeddings: class names -> indices, then DINO's weighted kNN
(:func:`~dinokit.evaluation.knn.knn_accuracy`) and optionally a linear probe
(:func:`~dinokit.evaluation.linear.linear_probe`).

Vectors and class names in, accuracies out; embedding folders first is the job of
:func:`dinokit.api.evaluate`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from .knn import DEFAULT_TEMPERATURE, REFERENCE_KS, knn_accuracy
from .linear import linear_probe

logger = logging.getLogger(__name__)


def label_scores(
    train_vectors: NDArray[np.floating],
    train_labels: Sequence[str],
    val_vectors: NDArray[np.floating],
    val_labels: Sequence[str],
    *,
    k: Sequence[int] = REFERENCE_KS,
    linear: bool = False,
    temperature: float = DEFAULT_TEMPERATURE,
) -> tuple[dict[int, float], float | None]:
    """kNN (and linear-probe) top-1 accuracy of ``val`` classified by ``train``.

    Args:
        train_vectors: (N, D) reference vectors.
        train_labels: Their N class names.
        val_vectors: (M, D) vectors to classify.
        val_labels: Their M class names; a class absent from ``train`` is always wrong.
        k: Neighbour counts of the kNN classifier.
        linear: Also fit a linear probe.
        temperature: kNN vote temperature.

    Returns:
        ``({k: kNN accuracy}, linear-probe accuracy or None)``, accuracies as fractions.
    """
    classes = sorted(set(train_labels))
    index = {name: i for i, name in enumerate(classes)}
    missing = sorted({label for label in val_labels if label not in index})
    if missing:
        logger.warning("val classes absent from train (always counted wrong): %s", missing)
    train_x = torch.from_numpy(np.require(train_vectors, requirements=("W", "C")))
    val_x = torch.from_numpy(np.require(val_vectors, requirements=("W", "C")))
    train_y = torch.tensor([index[label] for label in train_labels])
    val_y = torch.tensor([index.get(label, -1) for label in val_labels])
    knn = knn_accuracy(
        train_x, train_y, val_x, val_y, k=list(k), temperature=temperature, num_classes=len(classes)
    )
    probe = None
    if linear:
        probe = linear_probe(train_x, train_y, val_x, val_y, num_classes=len(classes)).accuracy
    return knn, probe
