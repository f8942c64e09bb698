"""Choosing the near-duplicate threshold on a collection's own images, with its own model.

The scale of cosine similarities depends strongly on the model (a weak model puts every
photo in a narrow cone, a strong one spreads them out), so a fixed threshold cannot fit all.
The calibration measures both sides of the threshold on the collection itself:

- copies: a seeded sample of the images is modified in memory
  (:data:`~dinokit.duplicates.copies.COPY_KINDS`: JPEG q30, 1/2 downscale, 1/4 downscale at
  q50, 90% crop) and embedded with the model and options recorded in the file
  (:meth:`~dinokit.embed.Embedder.from_metadata`, offline); a copy scores its cosine to the
  original's stored vector.
- distinct images: each sampled image scores its cosine to the most similar other image of
  the collection (itself and byte-identical files left out), found by an exact search over
  blocks of rows (memory O(sample x block), never N x N).

The threshold is the midpoint between the copies' 5th percentile and the distinct images'
99th percentile when the first is above the second; otherwise the value that minimises the
fraction of copies below it plus the fraction of distinct images at or above it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from .._progress import ProgressBar
from ..data import ImageReadError, open_image
from ..embed import Embedder
from ..embeddings import Embeddings
from ..search.query import recorded_embedder
from ..search.vectors import chunks, unit_rows
from .copies import COPY_KINDS, CopyKind, make_copy
from .nearest import most_similar_others

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE = 200
"""Images sampled by :func:`calibrate_threshold` (each gives one copy of every kind)."""

COPY_PERCENTILE = 5.0
"""Percentile of the copies' scores the threshold should stay below."""

DISTINCT_PERCENTILE = 99.0
"""Percentile of the distinct images' scores the threshold should stay above."""


@dataclass(frozen=True)
class CopyStats:
    """Scores of one kind of copy against its original.

    Attributes:
        kind: :attr:`CopyKind.name` (``jpeg_q30``).
        description: Table label (``JPEG q30 copy``).
        n: Copies scored.
        min: Lowest cosine.
        p5: 5th percentile.
        median: Median.
        calibrates: Whether these copies took part in choosing the threshold.
    """

    kind: str
    description: str
    n: int
    min: float
    p5: float
    median: float
    calibrates: bool


@dataclass(frozen=True)
class DistinctStats:
    """Scores of sampled images against their most similar other image of the collection.

    Attributes:
        n: Images scored.
        median: Median cosine.
        p99: 99th percentile.
        max: Highest cosine.
    """

    n: int
    median: float
    p99: float
    max: float


@dataclass(frozen=True, eq=False)
class ThresholdCalibration:
    """A near-duplicate threshold chosen on a collection, with the scores behind it.

    Attributes:
        threshold: Cosine similarity to pass to :func:`~dinokit.duplicates.find_duplicates`.
        separable: Whether the copies' 5th percentile is above the distinct images' 99th
            percentile (then ``threshold`` is their midpoint; otherwise it minimises the
            errors, see :func:`choose_threshold`).
        copies: Statistics of each kind of copy, in :data:`COPY_KINDS` order.
        distinct: Statistics of the distinct images.
        copies_p5: 5th percentile of the threshold-setting copies, pooled.
        missed: Fraction of the threshold-setting copies scoring below ``threshold``.
        linked: Fraction of the distinct images scoring at or above ``threshold``.
        sampled: Images copied and scored.
        missing: Drawn images whose file no longer exists (skipped).
        unreadable: Drawn images whose file could not be decoded (skipped).
        seed: Seed of the sample.
        rows: (S,) rows of the sampled images in the embeddings, in draw order.
        copy_scores: ``{kind: (S,) float32}`` cosine of each sampled image's copy to its
            stored vector.
        distinct_scores: (S,) float32 cosine to the most similar other image (NaN when
            every other image is a byte-identical copy).
        nearest: (S,) row of that image (-1 when none).
    """

    threshold: float
    separable: bool
    copies: tuple[CopyStats, ...]
    distinct: DistinctStats
    copies_p5: float
    missed: float
    linked: float
    sampled: int
    missing: int
    unreadable: int
    seed: int
    rows: NDArray[np.int64] = field(repr=False)
    copy_scores: dict[str, NDArray[np.float32]] = field(repr=False)
    distinct_scores: NDArray[np.float32] = field(repr=False)
    nearest: NDArray[np.int64] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the statistics, not the per-image scores)."""
        return {
            "threshold": self.threshold,
            "separable": self.separable,
            "copies_p5": self.copies_p5,
            "missed_copies": self.missed,
            "linked_distinct": self.linked,
            "sampled": self.sampled,
            "missing": self.missing,
            "unreadable": self.unreadable,
            "seed": self.seed,
            "copies": [asdict(c) for c in self.copies],
            "distinct": asdict(self.distinct),
        }


def choose_threshold(copy_scores: ArrayLike, distinct_scores: ArrayLike) -> tuple[float, bool]:
    """The cosine threshold that separates copies from distinct images.

    If the copies' 5th percentile is above the distinct images' 99th percentile (numpy's
    linear interpolation), the threshold is their midpoint. Otherwise it minimises
    ``mean(copies < t) + mean(distinct >= t)``: that sum is constant on each interval
    ``(v_i, v_{i+1}]`` between consecutive values ``v`` of the pooled scores, so the
    threshold is the midpoint of the best interval, the highest one on a tie (fewer false
    groups).

    Args:
        copy_scores: (C,) cosines of copies to their originals.
        distinct_scores: (M,) cosines of images to their most similar other image.

    Returns:
        ``(threshold, separable)``.
    """
    c = np.sort(np.asarray(copy_scores, dtype=np.float64).ravel())
    d = np.sort(np.asarray(distinct_scores, dtype=np.float64).ravel())
    if len(c) == 0 or len(d) == 0:
        raise ValueError("choosing a threshold needs at least one copy and one distinct score")
    low = float(np.percentile(c, COPY_PERCENTILE))
    high = float(np.percentile(d, DISTINCT_PERCENTILE))
    if low > high:
        return (low + high) / 2, True
    values = np.unique(np.concatenate([c, d]))
    if len(values) == 1:
        return float(values[0]), False
    ends = values[1:]
    # Errors at t = each interval's right end, scaled by C * M to stay exact integers.
    copies_below = np.searchsorted(c, ends, side="left")
    distinct_above = len(d) - np.searchsorted(d, ends, side="left")
    errors = copies_below * len(d) + distinct_above * len(c)
    best = int(np.flatnonzero(errors == errors.min())[-1])
    return float((values[best] + values[best + 1]) / 2), False


def calibrate_threshold(
    embeddings: str | Path | Embeddings,
    *,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    kinds: Sequence[CopyKind] = COPY_KINDS,
    batch_size: int = 32,
    precision: str = "auto",
    device: str = "auto",
    progress: bool = True,
) -> ThresholdCalibration:
    """Choose the near-duplicate threshold for a collection from copies of its own images.

    Draws ``sample`` images whose files still exist (seeded), makes each kind of copy in
    memory, embeds the copies with the model and options recorded in the embeddings, and
    compares their scores with those of distinct images (see the module docstring). Copy
    scores include any difference between this run's device/precision and the embedding
    run's; the same device and precision give the cleanest scores.

    Args:
        embeddings: An embeddings file or :class:`~dinokit.embed.Embeddings` whose images
            are on disk and whose model can be rebuilt.
        sample: Images to copy (fewer when fewer files exist).
        seed: Seed of the sample.
        kinds: Copies to make; those with ``calibrates`` set choose the threshold.
        batch_size: Copies per forward pass.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: ``auto``, ``cpu``, ``cuda``...
        progress: A bar with the time left on a terminal (log lines elsewhere); ``False``:
            log lines only.

    Returns:
        The threshold, whether copies and distinct images separate, and the statistics.

    Raises:
        RecordedModelError: The recorded model cannot be loaded (moved, changed since).
        ValueError: Fewer than two images, or fewer than two sampled files can be read.

    Example:
        >>> calibration = dinokit.duplicates.calibrate_threshold("shop.parquet")
        >>> groups = dinokit.duplicates("shop.parquet", threshold=calibration.threshold)
    """
    if sample < 2:
        raise ValueError(f"calibration needs a sample of at least 2 images, got {sample}")
    if not any(kind.calibrates for kind in kinds):
        raise ValueError("no copy kind sets the threshold (calibrates=True)")
    emb = embeddings if isinstance(embeddings, Embeddings) else Embeddings.load(embeddings)
    if len(emb) < 2:
        raise ValueError(f"calibration needs at least 2 images, the embeddings have {len(emb)}")
    embedder = recorded_embedder(emb, batch_size=batch_size, precision=precision, device=device)
    embedder.patch_tokens = False
    x = unit_rows(emb.vectors)
    drawn = _copy_scores(emb, embedder, x, sample=sample, seed=seed, kinds=kinds, progress=progress)
    rows, scores, missing, unreadable = drawn
    if len(rows) < 2:
        raise ValueError(
            f"only {len(rows)} of the drawn images could be read ({missing} files missing, "
            f"{unreadable} unreadable); calibration needs the images on disk"
        )
    distinct, nearest = most_similar_others(x, rows, emb.absolute_path)
    calibration = _calibration(
        kinds, rows, scores, distinct, nearest, missing=missing, unreadable=unreadable, seed=seed
    )
    logger.info(
        "calibrated threshold %.4f on %d images (%s)",
        calibration.threshold,
        len(rows),
        "copies and distinct images separate" if calibration.separable else "not separable",
    )
    return calibration


def _calibration(
    kinds: Sequence[CopyKind],
    rows: NDArray[np.int64],
    scores: dict[str, NDArray[np.float32]],
    distinct: NDArray[np.float32],
    nearest: NDArray[np.int64],
    *,
    missing: int,
    unreadable: int,
    seed: int,
) -> ThresholdCalibration:
    """The threshold chosen from the copies' and the distinct images' scores, with both
    sides' statistics."""
    known = distinct[~np.isnan(distinct)]
    if len(known) == 0:
        raise ValueError("every other image is a byte-identical copy: no distinct images")
    setting = np.concatenate([scores[k.name] for k in kinds if k.calibrates])
    threshold, separable = choose_threshold(setting, known)
    return ThresholdCalibration(
        threshold=threshold,
        separable=separable,
        copies=tuple(_copy_stats(k, scores[k.name]) for k in kinds),
        distinct=DistinctStats(
            n=len(known),
            median=float(np.median(known)),
            p99=float(np.percentile(known, DISTINCT_PERCENTILE)),
            max=float(known.max()),
        ),
        copies_p5=float(np.percentile(setting, COPY_PERCENTILE)),
        missed=float(np.mean(setting < threshold)),
        linked=float(np.mean(known >= threshold)),
        sampled=len(rows),
        missing=missing,
        unreadable=unreadable,
        seed=seed,
        rows=rows,
        copy_scores=scores,
        distinct_scores=distinct,
        nearest=nearest,
    )


def _copy_stats(kind: CopyKind, scores: NDArray[np.float32]) -> CopyStats:
    return CopyStats(
        kind=kind.name,
        description=kind.description,
        n=len(scores),
        min=float(scores.min()),
        p5=float(np.percentile(scores, COPY_PERCENTILE)),
        median=float(np.median(scores)),
        calibrates=kind.calibrates,
    )


def _copy_scores(
    emb: Embeddings,
    embedder: Embedder,
    x: NDArray[np.float32],
    *,
    sample: int,
    seed: int,
    kinds: Sequence[CopyKind],
    progress: bool = True,
) -> tuple[NDArray[np.int64], dict[str, NDArray[np.float32]], int, int]:
    """Draw, copy and embed: ``(rows (S,), {kind: (S,) cosines}, missing, unreadable)``."""
    order = np.random.default_rng(seed).permutation(len(emb))
    draft = embedder.transform.draft_size
    want = min(sample, len(emb))
    logger.info("calibration: %d sampled images, %d copies each", want, len(kinds))
    rows: list[int] = []
    vectors: list[NDArray[np.float32]] = []
    pending: list[tuple[int, list[Image.Image]]] = []
    missing = unreadable = 0

    bar = ProgressBar(
        want, desc="calibration", unit="image", bar=None if progress else False, logger=logger
    )

    def flush() -> None:
        copies = [copy for _, images in pending for copy in images]
        embedded = embed_images(embedder, copies).reshape(len(pending), len(kinds), -1)
        rows.extend(row for row, _ in pending)
        vectors.append(embedded)
        bar.update(len(pending))
        pending.clear()

    for row in order.tolist():
        if len(rows) + len(pending) >= want:
            break
        path = emb.absolute_path(row)
        if not path.is_file():
            missing += 1
            continue
        try:
            image = open_image(path)
        except ImageReadError as exc:
            logger.warning("%s; left out of the calibration", exc)
            unreadable += 1
            continue
        pending.append((row, [make_copy(image, kind, draft_size=draft) for kind in kinds]))
        if len(pending) * len(kinds) >= embedder.batch_size:
            flush()
    if pending:
        flush()
    bar.close()
    if missing:
        logger.info("calibration: %d drawn images not found on disk, skipped", missing)
    picked = np.asarray(rows, dtype=np.int64)
    scores: dict[str, NDArray[np.float32]] = {}
    if not rows:
        return picked, {k.name: np.zeros(0, dtype=np.float32) for k in kinds}, missing, unreadable
    stacked = np.concatenate(vectors)  # (S, K, D)
    for k, kind in enumerate(kinds):
        copy = unit_rows(stacked[:, k])
        scores[kind.name] = np.einsum("sd,sd->s", copy, x[picked]).astype(np.float32)
    return picked, scores, missing, unreadable


def embed_images(embedder: Embedder, images: Sequence[Image.Image]) -> NDArray[np.float32]:
    """Vectors of in-memory images, preprocessed and pooled as ``embedder`` does for files.

    Args:
        embedder: The embedder (its transform, feature and normalisation are used).
        images: RGB images (of any sizes; ``native`` mode batches equal shapes together).

    Returns:
        (n, D) float32 vectors in the order of ``images``.
    """
    out = np.zeros((len(images), embedder.dim), dtype=np.float32)
    tensors = [embedder.transform(image) for image in images]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, tensor in enumerate(tensors):
        by_shape.setdefault(tuple(tensor.shape), []).append(i)
    for indices in by_shape.values():
        for part in chunks(len(indices), embedder.batch_size):
            chosen = indices[part]
            vectors, _ = embedder.embed_tensor(torch.stack([tensors[i] for i in chosen]))
            out[chosen] = vectors.float().numpy()
    return out
