"""k-means clustering of embeddings (FAISS), with a suggested k and contact sheets.

Spherical k-means on L2-normalised embeddings (cosine geometry, like search): FAISS
``Kmeans`` seeded by k-means++ with a fixed seed, trained on at most
``max_points_per_centroid * k`` sampled points, then every image assigned to its most
similar centroid by :func:`dinokit.search.neighbours` (exact, a chunk of images at a time),
so memory grows with N * D (the embeddings themselves), never N * N.

``k="auto"`` fits k-means for a log-spaced range of k on a sample and keeps the k with the
highest simplified silhouette (Hruschka et al., 2004): for each point,
``(b - a) / max(a, b)`` with ``a`` its cosine distance to its own centroid and ``b`` to the
next closest centroid, averaged over the sample.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ._callable import make_callable
from .embeddings import Embeddings
from .search.index import import_faiss
from .search.vectors import neighbours, sample_rows, unit_rows

logger = logging.getLogger(__name__)

DEFAULT_ITERATIONS = 25
"""k-means iterations."""

MAX_POINTS_PER_CENTROID = 256
"""Training sample size per centroid (FAISS's default)."""

AUTO_SAMPLE = 20_000
"""Points used to score each candidate k of ``k="auto"``."""


@dataclass
class Clustering:
    """A k-means result.

    Attributes:
        centroids: (k, D) unit-norm centroids.
        assignments: (N,) cluster of each image, in ``[0, k)``.
        distances: (N,) cosine distance (1 - cosine) of each image to its centroid.
        sizes: (k,) images per cluster.
        k: Number of clusters.
        scores: For ``k="auto"``: ``{candidate k: simplified silhouette}``; else empty.
    """

    centroids: NDArray[np.float32]
    assignments: NDArray[np.int64]
    distances: NDArray[np.float32]
    sizes: NDArray[np.int64]
    k: int
    scores: dict[int, float]

    def members(self, cluster: int) -> NDArray[np.int64]:
        """Rows of one cluster, closest to its centroid first."""
        rows = np.flatnonzero(self.assignments == cluster)
        return rows[np.argsort(self.distances[rows], kind="stable")]


def kmeans_plus_plus(
    x: NDArray[np.float32], k: int, *, seed: int, sample: int = 32
) -> NDArray[np.float32]:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007) on at most ``sample * k`` rows.

    Args:
        x: (N, D) unit rows.
        k: Number of centres (<= N).
        seed: Random seed.
        sample: Rows per centre drawn before seeding (bounds the cost at O(sample k^2 D)).

    Returns:
        (k, D) initial centres, rows of ``x``.
    """
    rng = np.random.default_rng(seed)
    if x.shape[0] > sample * k:
        x = x[np.sort(rng.choice(x.shape[0], size=sample * k, replace=False))]
    chosen = [int(rng.integers(x.shape[0]))]
    # Squared Euclidean distance of unit vectors: 2 - 2 cos.
    dist = np.maximum(2.0 - 2.0 * (x @ x[chosen[0]]), 0.0)
    for _ in range(1, k):
        total = float(dist.sum())
        if total <= 0.0:  # fewer distinct points than k: take any unused row
            row = int(np.setdiff1d(np.arange(x.shape[0]), chosen)[0])
        else:
            row = int(rng.choice(x.shape[0], p=dist / total))
        chosen.append(row)
        dist = np.minimum(dist, np.maximum(2.0 - 2.0 * (x @ x[row]), 0.0))
    return np.ascontiguousarray(x[chosen], dtype=np.float32)


def _train(x: NDArray[np.float32], k: int, *, seed: int, iterations: int) -> NDArray[np.float32]:
    faiss = import_faiss()
    kmeans = faiss.Kmeans(
        x.shape[1],
        k,
        niter=iterations,
        seed=seed,
        spherical=True,
        max_points_per_centroid=MAX_POINTS_PER_CENTROID,
        verbose=False,
    )
    # Sampled here (seeded) instead of FAISS copying all N points.
    sample = sample_rows(x, k * MAX_POINTS_PER_CENTROID, seed)
    kmeans.train(sample, init_centroids=kmeans_plus_plus(sample, k, seed=seed))
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def simplified_silhouette(x: NDArray[np.float32], centroids: NDArray[np.float32]) -> float:
    """Mean simplified silhouette of unit rows ``x`` (N, D) against ``centroids`` (k >= 2, D)."""
    sims, _ = neighbours(x, centroids, 2)
    a, b = 1.0 - sims[:, 0], 1.0 - sims[:, 1]
    denom = np.maximum(np.maximum(a, b), 1e-12)
    return float(np.mean((b - a) / denom))


def candidate_ks(n: int) -> list[int]:
    """Log-spaced k from 2 to ``min(sqrt(n) * 2, 500)`` (at most about 12 values)."""
    top = max(2, min(int(2 * math.sqrt(n)), 500, n - 1))
    values = np.unique(np.round(np.geomspace(2, top, num=12)).astype(int))
    return [int(v) for v in values if v >= 2]


def suggest_k(
    x: NDArray[np.float32], *, seed: int = 0, iterations: int = DEFAULT_ITERATIONS
) -> tuple[int, dict[int, float]]:
    """The candidate k with the highest simplified silhouette on a sample of ``x``.

    Args:
        x: (N, D) unit rows.
        seed: Sample and k-means seed.
        iterations: k-means iterations per candidate.

    Returns:
        ``(k, {candidate k: silhouette})``.
    """
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"k='auto' needs at least 3 images, got {n}")
    sample = sample_rows(x, AUTO_SAMPLE, seed)
    scores: dict[int, float] = {}
    for k in candidate_ks(sample.shape[0]):
        centroids = _train(sample, k, seed=seed, iterations=iterations)
        scores[k] = simplified_silhouette(sample, centroids)
        logger.debug("k=%d: simplified silhouette %.4f", k, scores[k])
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def cluster(
    embeddings: str | Path | Embeddings,
    k: int | str = 20,
    *,
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
) -> Clustering:
    """Spherical k-means of the embeddings.

    Args:
        embeddings: An embeddings file or :class:`~dinokit.embed.Embeddings`.
        k: Number of clusters, or ``"auto"`` for the k with the best simplified silhouette.
        seed: Seed of the k-means initialisation and samples (same seed, same result).
        iterations: k-means iterations.

    Returns:
        Centroids, assignments, distances and sizes.

    Example:
        >>> result = dinokit.cluster("shop.parquet", k=20)
        >>> result.sizes
    """
    emb = embeddings if isinstance(embeddings, Embeddings) else Embeddings.load(embeddings)
    x = unit_rows(emb.vectors)
    n = x.shape[0]
    scores: dict[int, float] = {}
    if k == "auto":
        k, scores = suggest_k(x, seed=seed, iterations=iterations)
        logger.info("suggested k=%d (highest simplified silhouette)", k)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer or 'auto', got {k!r}")
    if k > n:
        raise ValueError(f"k={k} clusters for {n} images; use a k of at most {n}")
    centroids = _train(x, k, seed=seed, iterations=iterations)
    sims, ids = neighbours(x, centroids, 1)
    assignments = ids[:, 0].astype(np.int64)
    return Clustering(
        centroids=centroids,
        assignments=assignments,
        distances=np.clip(1.0 - sims[:, 0], 0.0, 2.0).astype(np.float32),
        sizes=np.bincount(assignments, minlength=k).astype(np.int64),
        k=k,
        scores=scores,
    )


SHEET_COLUMNS = 8
"""Thumbnails per contact-sheet row."""

THUMBNAIL = 96
"""Thumbnail size in pixels (square cells, aspect ratio kept)."""


def contact_sheet(files: list[Path], title: str, *, columns: int = SHEET_COLUMNS) -> Image.Image:
    """A grid of thumbnails under a title line; unreadable files become grey cells.

    Args:
        files: Images, in display order.
        title: Text of the header line.
        columns: Thumbnails per row.
    """
    from PIL import Image, ImageDraw

    from .data import ImageReadError
    from .data.thumbnails import thumbnail_image

    cols = max(1, min(columns, len(files)))
    rows = max(1, math.ceil(len(files) / cols))
    pad, header = 4, 20
    sheet = Image.new(
        "RGB",
        (cols * (THUMBNAIL + pad) + pad, header + rows * (THUMBNAIL + pad) + pad),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 4), title, fill=(0, 0, 0))
    for i, path in enumerate(files):
        x = pad + (i % cols) * (THUMBNAIL + pad)
        y = header + (i // cols) * (THUMBNAIL + pad)
        try:
            image = thumbnail_image(path, THUMBNAIL)
        except ImageReadError:
            draw.rectangle((x, y, x + THUMBNAIL - 1, y + THUMBNAIL - 1), fill=(200, 200, 200))
            continue
        sheet.paste(
            image, (x + (THUMBNAIL - image.width) // 2, y + (THUMBNAIL - image.height) // 2)
        )
    return sheet


def _save_jpeg(image: Image.Image, path: Path) -> None:
    image.save(path, format="JPEG", quality=85)


def write_clusters(
    embeddings: Embeddings,
    result: Clustering,
    out: str | Path,
    *,
    sheets: bool = True,
    per_sheet: int = 48,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``assignments.csv``, ``centroids.npy``, ``clusters.json`` and contact sheets.

    ``assignments.csv`` has ``path,label,cluster,distance`` (cosine distance to the centroid);
    ``sheets/cluster_NNN.jpg`` shows up to ``per_sheet`` members, closest to the centroid
    first, with the cluster size in the title. Every file is written atomically.

    Args:
        embeddings: The clustered embeddings.
        result: Their :func:`cluster` result.
        out: Output folder (created).
        sheets: Also draw one contact sheet per cluster (needs the images on disk).
        per_sheet: Thumbnails per sheet.
        overwrite: Replace existing outputs; otherwise existing ones are an error.

    Returns:
        ``{"assignments": ..., "centroids": ..., "summary": ..., "sheets": ...}`` paths.
    """
    import csv
    import io
    import json

    from ._files import atomic_write, save_npy

    folder = Path(out)
    paths = {
        "assignments": folder / "assignments.csv",
        "centroids": folder / "centroids.npy",
        "summary": folder / "clusters.json",
        "sheets": folder / "sheets",
    }
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists; pass --overwrite to replace it")
    folder.mkdir(parents=True, exist_ok=True)

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "label", "cluster", "distance"])
    for i in range(len(embeddings)):
        writer.writerow(
            [
                embeddings.paths[i],
                embeddings.labels[i] or "",
                int(result.assignments[i]),
                f"{float(result.distances[i]):.6f}",
            ]
        )
    atomic_write(paths["assignments"], lambda tmp: tmp.write_text(text.getvalue()))
    save_npy(paths["centroids"], result.centroids)
    summary = {
        "k": result.k,
        "sizes": result.sizes.tolist(),
        "auto_scores": {str(k): v for k, v in result.scores.items()},
        "embeddings": embeddings.metadata.get("fingerprint"),
    }
    atomic_write(paths["summary"], lambda tmp: tmp.write_text(json.dumps(summary, indent=1)))
    if sheets:
        paths["sheets"].mkdir(exist_ok=True)
        width = max(3, len(str(result.k - 1)))
        for c in range(result.k):
            rows = result.members(c)
            files = [embeddings.absolute_path(int(r)) for r in rows[:per_sheet]]
            title = f"cluster {c}: {len(rows)} images"
            if not files:
                continue
            image = contact_sheet(files, title)
            target = paths["sheets"] / f"cluster_{c:0{width}d}.jpg"
            atomic_write(target, partial(_save_jpeg, image))
    return paths


make_callable(__name__, cluster)
