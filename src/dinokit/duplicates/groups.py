"""Groups of near-duplicate and byte-identical images in an embeddings collection.

Two images are near-duplicates when the cosine similarity of their embeddings is at least a
threshold; groups are the connected components of that relation. The similar pairs come
from a k-nearest-neighbour graph searched one chunk of queries at a time (exact up to
:data:`~dinokit.search.vectors.EXACT_LIMIT` images, FAISS IVF above), so memory grows with
N * neighbours, never N * N.
Byte-identical files are found by SHA-256, hashing only files whose size is shared.

The default threshold was chosen on re-encoded, resized and cropped copies of real photos
(see ``docs/using-embeddings.md``); :func:`~dinokit.duplicates.calibrate_threshold` chooses
one for the model and images of a given collection.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._files import file_sha256
from .._progress import ProgressBar
from ..embeddings import Embeddings
from ..search.index import build_index
from ..search.vectors import chunks, unit_rows

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.999
"""Cosine similarity at or above which two images are called near-duplicates.

Measured on 500 real photos and 500 re-encoded / resized / cropped copies: it keeps JPEG
re-encodes and 2x downscales and no pair of distinct photos; the similarity scale depends on
the model, so calibrate it for yours (:func:`~dinokit.duplicates.calibrate_threshold`,
``dinokit duplicates --calibrate``)."""

DEFAULT_NEIGHBOURS = 16
"""Neighbours searched per image; larger groups still connect through chains of them."""

DUPLICATES_NPROBE = 8
"""IVF lists scanned per image: near-duplicates sit in the same or a neighbouring list (all
1,000 planted pairs of ``benchmarks/scale.py`` found at 100,000 vectors)."""

QUERY_CHUNK = 4096
"""Queries per FAISS call (memory O(QUERY_CHUNK * neighbours))."""


@dataclass(frozen=True)
class DuplicateMember:
    """One image of a duplicate group.

    Attributes:
        row: Its row in the embeddings.
        path: Its stored (relative) path.
        label: Its label, or ``None``.
        score: Highest cosine similarity to another member of the group.
        identical: Byte-identical to another member.
    """

    row: int
    path: str
    label: str | None
    score: float
    identical: bool


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are near-duplicates of each other (connected through similar pairs).

    Attributes:
        group: Group number, 0 for the largest.
        kind: ``identical`` when every member has the same bytes, else ``near``.
        members: Most similar first.
    """

    group: int
    kind: str
    members: list[DuplicateMember]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "group": self.group,
            "kind": self.kind,
            "size": len(self.members),
            "members": [asdict(m) for m in self.members],
        }


def connected_components(n: int, a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
    """Component labels of an undirected graph given as an edge list.

    Vectorised hooking and pointer jumping (Shiloach & Vishkin, 1982): memory O(n + edges).

    Args:
        n: Number of nodes.
        a: (E,) first endpoints.
        b: (E,) second endpoints.

    Returns:
        (n,) the smallest node id of each node's component.
    """
    labels = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return labels
    while True:
        la, lb = labels[a], labels[b]
        differ = la != lb
        if not differ.any():
            return labels
        la, lb = la[differ], lb[differ]
        low, high = np.minimum(la, lb), np.maximum(la, lb)
        # Hook each root onto the smallest root it touches, then flatten the trees.
        np.minimum.at(labels, high, low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped


def _similar_pairs(
    x: NDArray[np.float32],
    *,
    threshold: float,
    neighbours: int,
    index: str,
    nprobe: int,
    progress: bool = True,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """Pairs ``(i, j, cosine)`` with ``i < j`` and cosine >= threshold, from a k-NN graph."""
    n = x.shape[0]
    vindex = build_index(x, index, nprobe=nprobe)
    k = min(neighbours, n - 1)
    found_a: list[NDArray[np.int64]] = []
    found_b: list[NDArray[np.int64]] = []
    found_s: list[NDArray[np.float32]] = []
    bar = ProgressBar(
        n, desc="neighbours", unit="image", bar=None if progress else False, logger=logger
    )
    for rows in chunks(n, QUERY_CHUNK):
        query = np.arange(rows.start, rows.stop, dtype=np.int64)
        scores, ids = vindex.search(x[rows], k, exclude=query)  # an image is not its own pair
        keep = (ids >= 0) & (scores >= threshold)
        qi = np.broadcast_to(query[:, None], ids.shape)[keep]
        found_a.append(np.minimum(qi, ids[keep]))
        found_b.append(np.maximum(qi, ids[keep]))
        found_s.append(scores[keep])
        bar.update(rows.stop - rows.start)
    bar.close()
    a, b, s = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s)
    if len(a):  # each pair is usually found from both ends: keep one
        order = np.lexsort((b, a))
        a, b, s = a[order], b[order], s[order]
        first = np.ones(len(a), dtype=bool)
        first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        a, b, s = a[first], b[first], s[first]
    return a, b, s


def file_hashes(files: list[Path], *, progress: bool = True) -> dict[int, str]:
    """SHA-256 of the files that share their size with another file (others are unique).

    Args:
        files: Image files; missing or unreadable ones are skipped (logged once).
        progress: A bar on a terminal (log lines elsewhere); ``False``: log lines only.

    Returns:
        ``{position in files: hex digest}`` for the hashed files.
    """
    by_size: dict[int, list[int]] = defaultdict(list)
    missing = 0
    for i, path in enumerate(files):
        try:
            by_size[os.stat(path).st_size].append(i)
        except OSError:
            missing += 1
    if missing:
        logger.info("%d of %d images not found: not compared byte for byte", missing, len(files))
    hashes: dict[int, str] = {}
    shared = [i for same_size in by_size.values() if len(same_size) > 1 for i in same_size]
    if not shared:
        return hashes
    bar = ProgressBar(
        len(shared), desc="hashing", unit="file", bar=None if progress else False, logger=logger
    )
    for i in shared:
        try:
            hashes[i] = file_sha256(files[i])
        except OSError as exc:
            logger.warning("%s: cannot read (%s); not compared byte for byte", files[i], exc)
        bar.update(1)
    bar.close()
    return hashes


def find_duplicates(
    embeddings: str | Path | Embeddings,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = DEFAULT_NEIGHBOURS,
    index: str = "auto",
    nprobe: int = DUPLICATES_NPROBE,
    hash_files: bool = True,
    progress: bool = True,
) -> list[DuplicateGroup]:
    """Groups of near-duplicate (cosine >= threshold) and byte-identical images.

    Args:
        embeddings: An embeddings file or :class:`~dinokit.embed.Embeddings`.
        threshold: Cosine similarity in [-1, 1] at or above which two images are linked.
        neighbours: Nearest neighbours examined per image.
        index: Neighbour search: ``auto`` (exact up to
            :data:`~dinokit.search.vectors.EXACT_LIMIT` images, IVF above), ``exact``, ``ivf``
            (``hnsw`` is refused: graph search misses exact ties).
        nprobe: IVF lists scanned per image.
        hash_files: Also link byte-identical files (needs the images on disk).
        progress: Bars with the time left on a terminal (log lines elsewhere); ``False``:
            log lines only.

    Returns:
        Groups of two or more images, largest first.

    Example:
        >>> for group in dinokit.duplicates("shop.parquet", threshold=0.95):
        ...     print(group.kind, [m.path for m in group.members])
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    if index not in ("auto", "exact", "ivf"):
        raise ValueError(f"duplicates supports the index kinds auto, exact and ivf, not {index!r}")
    emb = embeddings if isinstance(embeddings, Embeddings) else Embeddings.load(embeddings)
    n = len(emb)
    if n < 2:
        return []
    x = unit_rows(emb.vectors)
    a, b, s = _similar_pairs(
        x, threshold=threshold, neighbours=neighbours, index=index, nprobe=nprobe, progress=progress
    )
    logger.info("%d image pairs with cosine >= %.3f", len(a), threshold)
    hashes = file_hashes(emb.absolute_paths(), progress=progress) if hash_files else {}
    same_bytes = _same_bytes(hashes)
    same_a = np.asarray([rows[0] for rows in same_bytes for _ in rows[1:]], dtype=np.int64)
    same_b = np.asarray([row for rows in same_bytes for row in rows[1:]], dtype=np.int64)
    labels = connected_components(n, np.concatenate([a, same_a]), np.concatenate([b, same_b]))
    identical = np.zeros(n, dtype=bool)
    identical[np.concatenate([same_a, same_b])] = True
    best = _best_scores(x, a, b, s, same_bytes)
    return _groups(emb, labels, best, identical, hashes)


def _same_bytes(hashes: dict[int, str]) -> list[list[int]]:
    """Rows sharing one digest, for every digest of two or more rows."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for row, digest in hashes.items():
        by_hash[digest].append(row)
    return [rows for rows in by_hash.values() if len(rows) > 1]


def _best_scores(
    x: NDArray[np.float32],
    a: NDArray[np.int64],
    b: NDArray[np.int64],
    s: NDArray[np.float32],
    same_bytes: list[list[int]],
) -> NDArray[np.float32]:
    """(N,) each row's highest cosine to a row it is linked to (-inf when unlinked)."""
    best = np.full(len(x), -np.inf, dtype=np.float32)
    np.maximum.at(best, a, s)
    np.maximum.at(best, b, s)
    for rows in same_bytes:  # identical files: their own cosine (1 unless re-embedded)
        for i in rows:
            others = [j for j in rows if j != i]
            best[i] = max(best[i], float(np.max(x[others] @ x[i])))
    return best


def _groups(
    emb: Embeddings,
    labels: NDArray[np.int64],
    best: NDArray[np.float32],
    identical: NDArray[np.bool_],
    hashes: dict[int, str],
) -> list[DuplicateGroup]:
    """The components of two or more rows as groups, largest first, best member first."""
    members_of: dict[int, list[int]] = defaultdict(list)
    for row in np.flatnonzero(labels != np.arange(len(labels))).tolist():
        members_of[int(labels[row])].append(row)
    components = [[root, *rows] for root, rows in members_of.items()]
    components.sort(key=lambda rows: (-len(rows), emb.paths[rows[0]]))
    groups: list[DuplicateGroup] = []
    for number, rows in enumerate(components):
        members = [
            DuplicateMember(
                row=r,
                path=emb.paths[r],
                label=emb.labels[r],
                score=float(best[r]),
                identical=bool(identical[r]),
            )
            for r in rows
        ]
        members.sort(key=lambda m: (-m.score, m.path))
        digests = {hashes.get(r) for r in rows}
        kind = "identical" if len(digests) == 1 and None not in digests else "near"
        groups.append(DuplicateGroup(group=number, kind=kind, members=members))
    return groups
