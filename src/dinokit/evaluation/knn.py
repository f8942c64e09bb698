"""Weighted k-nearest-neighbour classification of embeddings (DINO's kNN evaluation).

Follows ``knn_classifier`` in facebookresearch/dino ``eval_knn.py`` (Caron et al., 2021,
arXiv:2104.14294; the weighting is Wu et al., 2018, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination"): features are L2-normalised, the similarity is the
cosine (a dot product), each test point's ``k`` most similar training points vote for their
label with weight ``exp(similarity / T)`` (T = 0.07), and the class with the largest summed
vote wins.

Differences from the reference: test rows are processed in chunks sized from a memory budget
(the reference always uses 100 chunks, so its memory grows with the test set), votes are
accumulated with ``scatter_add`` instead of a ``(chunk * k, classes)`` one-hot matrix, one
neighbour search serves every ``k``, ``k`` larger than the training set is clipped instead of
crashing ``topk``, and ties between classes go to the smallest label (``argmax``) instead of
an unspecified sort order. Accuracies are fractions in [0, 1], not percentages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

#: Reference temperature of the vote weights.
DEFAULT_TEMPERATURE = 0.07
#: Reference default ``k`` (``eval_knn.py`` reports 10, 20, 100 and 200).
DEFAULT_K = 20
#: The ``k`` values DINO's ``eval_knn.py`` reports.
REFERENCE_KS: tuple[int, ...] = (10, 20, 100, 200)
#: Elements of the ``(chunk, N)`` similarity matrix per chunk when no chunk size is given
#: (2**25 float32 values = 128 MiB).
CHUNK_ELEMENTS = 2**25


def _as_ks(k: int | Sequence[int]) -> list[int]:
    ks = [k] if isinstance(k, int) else list(k)
    if not ks or any(v < 1 for v in ks):
        raise ValueError(f"k must be a positive integer or a non-empty list of them, got {k}")
    return ks


def _check_inputs(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, num_classes: int | None
) -> int:
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(
            f"features must be (N, D) and (M, D), got {tuple(train_features.shape)} "
            f"and {tuple(test_features.shape)}"
        )
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train and test features differ in width: {train_features.shape[1]} "
            f"vs {test_features.shape[1]}"
        )
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(
            f"train_labels must be ({train_features.shape[0]},), got {tuple(train_labels.shape)}"
        )
    if train_features.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature")
    if train_labels.is_floating_point() or train_labels.is_complex():
        raise ValueError(f"labels must be integers, got {train_labels.dtype}")
    if int(train_labels.min()) < 0:
        raise ValueError("labels must be >= 0")
    n_seen = int(train_labels.max()) + 1
    if num_classes is None:
        return n_seen
    if num_classes < n_seen:
        raise ValueError(f"num_classes={num_classes} but train_labels go up to {n_seen - 1}")
    return num_classes


def _predict_chunks(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    *,
    ks: list[int],
    temperature: float,
    num_classes: int | None,
    chunk_size: int | None,
) -> Iterator[tuple[slice, dict[int, Tensor]]]:
    """Yield ``(rows, {k: (chunk,) predicted labels})`` for consecutive chunks of test rows."""
    n_classes = _check_inputs(train_features, train_labels, test_features, num_classes)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n_train = train_features.shape[0]
    device = train_features.device
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // n_train)
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    clipped = {k: min(k, n_train) for k in ks}
    if any(k > n_train for k in ks):
        logger.warning("k > %d training points: using all of them for k in %s", n_train, ks)
    k_max = max(clipped.values())

    train_t = F.normalize(train_features.float(), dim=1).t()  # (D, N)
    labels = train_labels.to(device=device, dtype=torch.long)
    for start in range(0, test_features.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        chunk = F.normalize(test_features[rows].to(device=device, dtype=torch.float32), dim=1)
        similarity = chunk @ train_t  # (B, N) cosine similarities
        sims, idx = similarity.topk(k_max, dim=1, largest=True, sorted=True)  # (B, k_max)
        weights = (sims / temperature).exp()
        neighbour_labels = labels[idx]  # (B, k_max)
        preds: dict[int, Tensor] = {}
        for k, k_used in clipped.items():
            votes = torch.zeros(chunk.shape[0], n_classes, device=device)
            votes.scatter_add_(1, neighbour_labels[:, :k_used], weights[:, :k_used])
            preds[k] = votes.argmax(dim=1)  # ties: the smallest label
        yield rows, preds


@torch.no_grad()
def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    *,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Weighted kNN labels for test features.

    Args:
        train_features: (N, D) reference features (normalised here; any float dtype).
        train_labels: (N,) integer labels in ``[0, num_classes)``.
        test_features: (M, D) features to classify (moved to ``train_features``' device).
        k: Number of neighbours; clipped to N.
        temperature: Vote weights are ``exp(cosine / temperature)``.
        num_classes: Number of classes; default ``max(train_labels) + 1``.
        chunk_size: Test rows per chunk (memory O(chunk_size * N)); default from a 128 MiB
            budget for the similarity block.

    Returns:
        (M,) int64 predicted labels on ``train_features``' device.
    """
    ks = _as_ks(k)
    out = torch.empty(test_features.shape[0], dtype=torch.long, device=train_features.device)
    for rows, preds in _predict_chunks(
        train_features,
        train_labels,
        test_features,
        ks=ks,
        temperature=temperature,
        num_classes=num_classes,
        chunk_size=chunk_size,
    ):
        out[rows] = preds[ks[0]]
    return out


@torch.no_grad()
def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int | Sequence[int] = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> dict[int, float]:
    """Top-1 accuracy of the weighted kNN classifier, for one or several ``k``.

    One neighbour search (for the largest ``k``) serves every ``k``.

    Args:
        train_features: (N, D) reference features (normalised here; any float dtype).
        train_labels: (N,) integer labels.
        test_features: (M, D) features to classify.
        test_labels: (M,) their true labels (a label absent from training is never right).
        k: Neighbour count(s), e.g. ``(10, 20, 100, 200)`` as in the reference; each is
            clipped to N.
        temperature: Vote weights are ``exp(cosine / temperature)``.
        num_classes: Number of classes; default ``max(train_labels) + 1``.
        chunk_size: Test rows per chunk (see :func:`knn_predict`).

    Returns:
        ``{k: top-1 accuracy as a fraction in [0, 1]}`` for each requested ``k``.
    """
    ks = _as_ks(k)
    if test_labels.shape != (test_features.shape[0],):
        raise ValueError(
            f"test_labels must be ({test_features.shape[0]},), got {tuple(test_labels.shape)}"
        )
    if test_features.shape[0] == 0:
        raise ValueError("kNN accuracy needs at least one test feature")
    targets = test_labels.to(device=train_features.device, dtype=torch.long)
    correct = {kk: torch.zeros((), dtype=torch.long, device=targets.device) for kk in ks}
    for rows, preds in _predict_chunks(
        train_features,
        train_labels,
        test_features,
        ks=ks,
        temperature=temperature,
        num_classes=num_classes,
        chunk_size=chunk_size,
    ):
        for kk, pred in preds.items():
            correct[kk] += (pred == targets[rows]).sum()
    total = test_features.shape[0]
    return {kk: int(correct[kk]) / total for kk in ks}
