"""Label-free quality of an embedding set: effective rank and uniformity.

- Effective rank (RankMe: Garrido et al., 2023, "RankMe: Assessing the downstream performance
  of pretrained self-supervised representations by their rank", after Roy & Vetterli, 2007):
  ``exp(H(p))`` with ``p = s / sum(s)`` the normalised singular values of the (N, D) matrix of
  L2-normalised embeddings. 1 for a collapsed representation (every image the same vector),
  up to ``min(N, D)`` when every direction is used equally.
- Uniformity (Wang & Isola, 2020, "Understanding contrastive representation learning through
  alignment and uniformity on the hypersphere"): ``log E exp(-2 ||x - y||^2)`` over pairs of
  distinct images; lower (more negative) is more spread out, 0 is total collapse.

Both need no labels. The singular values come from the (D, D) Gram matrix accumulated in
chunks (memory flat in N); uniformity uses a seeded sample of at most 4,096 images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor

UNIFORMITY_SAMPLE = 4096
"""Images sampled for the uniformity estimate."""

GRAM_CHUNK = 65_536
"""Rows per chunk when accumulating the Gram matrix."""


@dataclass(frozen=True)
class QualityScore:
    """Label-free scores of an embedding set.

    Attributes:
        effective_rank: RankMe effective rank, in ``[1, min(N, D)]``; higher is better.
        effective_rank_ratio: ``effective_rank / min(N, D)``, comparable across widths.
        uniformity: Wang & Isola uniformity (t = 2), in ``[-4, 0]``; lower is better.
    """

    effective_rank: float
    effective_rank_ratio: float
    uniformity: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return asdict(self)


def _as_tensor(vectors: Tensor | NDArray[np.floating]) -> Tensor:
    x = (
        vectors
        if isinstance(vectors, Tensor)
        else torch.from_numpy(
            np.require(vectors, requirements="W")  # torch wants writable memory
        )
    )
    x = x.detach().float().cpu()
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, D) matrix, got {tuple(x.shape)}")
    return x


@torch.no_grad()
def effective_rank(vectors: Tensor | NDArray[np.floating]) -> float:
    """RankMe effective rank of the L2-normalised rows of ``vectors`` (N, D)."""
    x = _as_tensor(vectors)
    gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[0], GRAM_CHUNK):
        block = F.normalize(x[start : start + GRAM_CHUNK], dim=1).double()
        gram += block.t() @ block
    singular = torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt()
    p = singular / singular.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def uniformity(
    vectors: Tensor | NDArray[np.floating], *, t: float = 2.0, sample: int = UNIFORMITY_SAMPLE
) -> float:
    """Wang & Isola uniformity ``log E exp(-t ||x - y||^2)`` over distinct pairs.

    Args:
        vectors: (N, D) embeddings (L2-normalised here), N >= 2.
        t: Temperature of the Gaussian potential (2 in the paper).
        sample: At most this many rows (seeded sample) enter the pairwise estimate.
    """
    x = _as_tensor(vectors)
    if x.shape[0] < 2:
        raise ValueError("uniformity needs at least 2 embeddings")
    if x.shape[0] > sample:
        rows = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:sample]
        x = x[rows]
    x = F.normalize(x, dim=1)
    sq = (2.0 - 2.0 * (x @ x.t())).clamp_min(0.0)  # (S, S) squared distances of unit vectors
    pairs = sq[torch.triu_indices(len(x), len(x), offset=1).unbind()]
    return float(torch.logsumexp(-t * pairs.double(), dim=0) - np.log(len(pairs)))


def quality_score(vectors: Tensor | NDArray[np.floating]) -> QualityScore:
    """Effective rank and uniformity of an embedding set (no labels needed).

    Args:
        vectors: (N, D) embeddings, N >= 2.
    """
    x = _as_tensor(vectors)
    rank = effective_rank(x)
    return QualityScore(
        effective_rank=rank,
        effective_rank_ratio=rank / min(x.shape),
        uniformity=uniformity(x),
    )
