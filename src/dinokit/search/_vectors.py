"""Small helpers on embedding matrices shared by search, duplicates and clustering."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: Rows whose norm differs from 1 by more than this are re-normalised before cosine search.
NORM_TOLERANCE = 1e-3


def unit_rows(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """The rows of ``vectors`` L2-normalised, as a C-contiguous float32 matrix.

    Args:
        vectors: (N, D) matrix.

    Returns:
        (N, D) float32 with unit rows (zero rows stay zero). The input array itself is
        returned when it already is contiguous float32 with unit rows (no copy).
    """
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {out.shape}")
    if out.shape[0] == 0:
        return out
    norms = np.linalg.norm(out, axis=1)
    if np.all(np.abs(norms - 1.0) <= NORM_TOLERANCE):
        return out
    return np.ascontiguousarray(out / np.maximum(norms, 1e-12)[:, None], dtype=np.float32)


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` rows covering ``range(n)``."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]
