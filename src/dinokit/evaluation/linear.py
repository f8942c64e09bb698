"""Linear probe: multinomial logistic regression on frozen embeddings, in torch.

The usual linear evaluation of self-supervised features (DINO, Caron et al., 2021, and the
logistic-regression protocol of SimCLR, Chen et al., 2020): features are standardised with
the training mean and standard deviation, a linear classifier is fitted by full-batch
L-BFGS on the cross-entropy plus an L2 penalty, and top-1 accuracy is measured on the
validation set. The L2 strength is chosen from a small grid on a held-out fifth of the
training set, then the classifier is refitted on all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

DEFAULT_WEIGHT_DECAYS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)
"""L2 strengths tried (penalty ``wd * ||W||^2 / 2`` added to the mean cross-entropy)."""

HOLDOUT_FRACTION = 0.2
"""Share of the training set held out to choose the L2 strength."""


@dataclass(frozen=True)
class LinearProbeResult:
    """Linear-probe outcome.

    Attributes:
        accuracy: Top-1 accuracy on the validation features, a fraction in [0, 1].
        weight_decay: The L2 strength chosen on the held-out split.
        holdout_accuracy: ``{weight decay: held-out accuracy}`` for each candidate.
    """

    accuracy: float
    weight_decay: float
    holdout_accuracy: dict[float, float]


def fit_logistic_regression(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    weight_decay: float,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor]:
    """Fit ``logits = features @ W.T + b`` by full-batch L-BFGS.

    Args:
        features: (N, D) float32 inputs (standardised by the caller).
        labels: (N,) int64 classes in ``[0, num_classes)``.
        num_classes: Number of classes C.
        weight_decay: L2 penalty on ``W`` (not on ``b``).
        max_iter: L-BFGS iterations.

    Returns:
        ``(W, b)``: (C, D) weights and (C,) biases.
    """
    weight = torch.zeros(num_classes, features.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.t() + bias, labels)
        loss = loss + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    return weight.detach(), bias.detach()


def _accuracy(weight: Tensor, bias: Tensor, features: Tensor, labels: Tensor) -> float:
    predictions = (features @ weight.t() + bias).argmax(dim=1)
    return int((predictions == labels).sum()) / len(labels)


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    val_features: Tensor,
    val_labels: Tensor,
    *,
    num_classes: int | None = None,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    max_iter: int = 200,
    seed: int = 0,
) -> LinearProbeResult:
    """Top-1 accuracy of a logistic-regression classifier on frozen features.

    Args:
        train_features: (N, D) features of the labelled training images.
        train_labels: (N,) int labels in ``[0, num_classes)``.
        val_features: (M, D) features to classify.
        val_labels: (M,) their labels (``-1`` or a class absent from training is never right).
        num_classes: Number of classes (default ``max(train_labels) + 1``).
        weight_decays: L2 strengths to choose from on a held-out split.
        max_iter: L-BFGS iterations per fit.
        seed: Seed of the held-out split.

    Returns:
        The validation accuracy and the chosen L2 strength.
    """
    if train_features.ndim != 2 or val_features.ndim != 2:
        raise ValueError("features must be (N, D) matrices")
    if train_features.shape[1] != val_features.shape[1]:
        raise ValueError(
            f"train and val features differ in width: {train_features.shape[1]} "
            f"vs {val_features.shape[1]}"
        )
    if len(train_features) < 2 or len(val_features) == 0:
        raise ValueError("the linear probe needs at least 2 training and 1 validation feature")
    if not weight_decays:
        raise ValueError("weight_decays must not be empty")
    x = train_features.detach().float().cpu()
    y = train_labels.detach().long().cpu()
    classes = num_classes or int(y.max()) + 1
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    x = (x - mean) / std
    xv = (val_features.detach().float().cpu() - mean) / std
    yv = val_labels.detach().long().cpu()

    holdout: dict[float, float] = {}
    if len(weight_decays) == 1:
        chosen = float(weight_decays[0])
    else:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        n_hold = max(1, round(HOLDOUT_FRACTION * len(x)))
        hold, fit = order[:n_hold], order[n_hold:]
        for wd in weight_decays:
            w, b = fit_logistic_regression(
                x[fit], y[fit], classes, weight_decay=wd, max_iter=max_iter
            )
            holdout[float(wd)] = _accuracy(w, b, x[hold], y[hold])
            logger.debug("linear probe: weight decay %g, held-out top-1 %.4f", wd, holdout[wd])
        # Ties go to the strongest regularisation (the simplest classifier).
        chosen = max(holdout, key=lambda wd: (holdout[wd], wd))
    w, b = fit_logistic_regression(x, y, classes, weight_decay=chosen, max_iter=max_iter)
    return LinearProbeResult(_accuracy(w, b, xv, yv), chosen, holdout)
