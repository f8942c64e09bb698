"""The most similar other image of given images, by exact search.

For the calibration's distinct-image scores: each query's neighbours are fetched best first
by :func:`dinokit.search.neighbours` (the image itself left out), skipping files with the same
bytes (duplicates already in the collection by construction); never an N x N matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .._files import file_sha256
from ..search.vectors import neighbours

FIRST_NEIGHBOURS = 8
"""Neighbours fetched first per query (more only when they are all excluded)."""


def most_similar_others(
    x: NDArray[np.float32],
    rows: NDArray[np.int64],
    path_of: Callable[[int], Path],
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Each given row's most similar other row, leaving out byte-identical files.

    Args:
        x: (N, D) unit vectors.
        rows: (S,) rows to look up.
        path_of: The image file of a row (its bytes are compared only when sizes match).

    Returns:
        (S,) cosines and (S,) rows of the most similar other image; NaN and -1 where every
        other image is a byte-identical copy.
    """
    scores = np.full(len(rows), np.nan, dtype=np.float32)
    found = np.full(len(rows), -1, dtype=np.int64)
    same = _SameBytes(path_of)
    others = len(x) - 1
    todo = np.arange(len(rows))
    k = min(others, FIRST_NEIGHBOURS)
    while len(todo) and k > 0:
        top_scores, top_ids = neighbours(x[rows[todo]], x, k, exclude=rows[todo])
        left: list[int] = []
        for q, candidate_scores, candidate_ids in zip(todo, top_scores, top_ids, strict=True):
            row = int(rows[q])
            for score, other in zip(candidate_scores.tolist(), candidate_ids.tolist(), strict=True):
                if other >= 0 and not same(row, other):
                    scores[q], found[q] = score, other
                    break
            else:
                left.append(int(q))
        if k == others:
            break
        todo, k = np.asarray(left, dtype=np.int64), min(others, 4 * k)
    return scores, found


class _SameBytes:
    """Whether two rows' files are byte-identical (sizes first, then cached SHA-256)."""

    def __init__(self, path_of: Callable[[int], Path]) -> None:
        self.path_of = path_of
        self.sizes: dict[int, int | None] = {}
        self.digests: dict[int, str | None] = {}

    def __call__(self, a: int, b: int) -> bool:
        size = self._size(a)
        if size is None or size != self._size(b):
            return False
        digest = self._digest(a)
        return digest is not None and digest == self._digest(b)

    def _size(self, row: int) -> int | None:
        if row not in self.sizes:
            try:
                self.sizes[row] = self.path_of(row).stat().st_size
            except OSError:
                self.sizes[row] = None
        return self.sizes[row]

    def _digest(self, row: int) -> str | None:
        if row not in self.digests:
            try:
                self.digests[row] = file_sha256(self.path_of(row))
            except OSError:
                self.digests[row] = None
        return self.digests[row]
