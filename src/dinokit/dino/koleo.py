"""KoLeo regulariser: spread a batch's embeddings over the sphere (DINOv2).

The Kozachenko-Leonenko entropy estimator (Sablayrolles et al., 2019, "Spreading vectors
for similarity search") as DINOv2 (Oquab et al., 2024) uses it on the student's CLS
tokens: L2-normalise the ``n`` vectors, find each one's nearest other vector by inner
product, and minimise ``-mean_i log(||x_i - x_nn(i)|| + eps)``. DINOv2 adds it with weight
0.1 per global crop (``ssl_meta_arch.py``: ``koleo_loss_weight``, the loss summed over the
two global crops' CLS tokens). The nearest neighbour is chosen without gradient; the
distance to it carries the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: DINOv2's ``KoLeoLoss`` epsilon (normalisation and distance).
KOLEO_EPS = 1e-8
#: DINOv2's ``koleo_loss_weight``.
DINOV2_KOLEO_WEIGHT = 0.1


def koleo_loss(x: Tensor, eps: float = KOLEO_EPS) -> Tensor:
    """KoLeo loss of one batch of embeddings.

    Args:
        x: ``(n, d)`` embeddings, ``n >= 2`` (normalised here, in float32).
        eps: Added to norms and distances (DINOv2's 1e-8).

    Returns:
        A scalar: ``-mean_i log(||x_i - x_j(i)|| + eps)`` with ``j(i)`` the nearest other
        row of the normalised ``x``. Lower when the rows are spread out; ``-log(2)`` is the
        minimum for two antipodal vectors.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"koleo_loss needs (n >= 2, d) embeddings, got {tuple(x.shape)}")
    with torch.autocast(x.device.type, enabled=False):
        z = F.normalize(x.float(), dim=-1, eps=eps)
        with torch.no_grad():
            dots = z @ z.T
            dots.fill_diagonal_(-2.0)  # below any cosine: a row is never its own neighbour
            nearest = dots.argmax(dim=1)
        distance = (z - z[nearest]).norm(dim=-1)
        return -torch.log(distance + eps).mean()


def koleo_per_crop(features: Tensor, n_crops: int) -> Tensor:
    """Sum of :func:`koleo_loss` over ``n_crops`` equal chunks of ``features``.

    Args:
        features: ``(n_crops * B, d)`` CLS tokens, crop after crop (as the student returns
            its global views).
        n_crops: Number of crops (DINOv2: the 2 global crops).

    Returns:
        A scalar: each crop's batch spread separately, as in DINOv2 (two views of one image
        are near each other by design and must not count as neighbours).
    """
    return torch.stack([koleo_loss(chunk) for chunk in features.chunk(n_crops)]).sum()
