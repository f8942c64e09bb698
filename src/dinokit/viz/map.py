"""2-D maps of embeddings: a layout (PCA, UMAP or t-SNE) drawn as a PNG scatter.

- PCA (default, no extra dependency): the top-2 eigenvectors of the D x D covariance,
  accumulated over row chunks, so memory is flat in the number of images.
- UMAP (McInnes, Healy & Melville, 2018, ``umap-learn``) and t-SNE (van der Maaten & Hinton,
  2008, ``scikit-learn``) when the ``viz`` extra is installed; both start from a 50-d PCA,
  the usual way to make them fast and stable on wide features.

Points are coloured by label or cluster; the legend keeps the largest groups and gathers the
rest under "other". Optional thumbnails sit at spread-out points (farthest-point sampling).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .._files import atomic_write
from ..data.io import ImageReadError
from ..data.thumbnails import thumbnail_image
from ..embeddings import Embeddings
from ..runtime.machine import threaded_map
from ._map_figure import LegendEntry, color_groups, draw_map, spread_sample
from .inputs import (
    Clusters,
    MissingDependencyError,
    check_output,
    load_embeddings,
    read_clusters,
)

logger = logging.getLogger(__name__)

Method = Literal["pca", "umap", "tsne"]
METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
METHOD_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
ColorBy = Literal["label", "cluster"]

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "LegendEntry",
    "MapResult",
    "color_groups",
    "draw_map",
    "layout_2d",
    "pca",
    "plot_map",
    "spread_sample",
]


def pca(
    vectors: NDArray[np.floating[Any]], k: int = 2, *, chunk: int = 65536
) -> NDArray[np.float32]:
    """Project rows onto their top-``k`` principal components.

    Args:
        vectors: (N, D) features.
        k: Output dimensions (clipped to D).
        chunk: Rows per step when accumulating the covariance and projecting.

    Returns:
        (N, k) float32 coordinates; each component's sign is fixed so its largest loading is
        positive (the same input always gives the same picture).
    """
    n, d = vectors.shape
    k = min(k, d)
    mean = np.zeros(d, dtype=np.float64)
    for start in range(0, n, chunk):
        mean += vectors[start : start + chunk].sum(axis=0, dtype=np.float64)
    mean /= max(n, 1)
    cov = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, chunk):
        block = vectors[start : start + chunk].astype(np.float64) - mean
        cov += block.T @ block
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    components = vecs[:, ::-1][:, :k]
    signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(k)])
    components = components * np.where(signs == 0, 1.0, signs)
    out = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        out[start : start + chunk] = (vectors[start : start + chunk] - mean) @ components
    return out


def _import_optional(module: str, package: str, method: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"--method {method} needs {package}: pip install 'dinokit[viz]' "
            f"(or {package}), or use --method pca"
        ) from error


def layout_2d(
    vectors: NDArray[np.floating[Any]], *, method: Method = "pca", seed: int = 0
) -> NDArray[np.float32]:
    """Place each row in 2-D.

    Args:
        vectors: (N, D) features.
        method: ``pca``, ``umap`` (needs ``umap-learn``) or ``tsne`` (needs ``scikit-learn``).
        seed: Random seed of UMAP / t-SNE.

    Returns:
        (N, 2) float32 coordinates.

    Raises:
        ValueError: Unknown method.
        MissingDependencyError: The method's package is not installed.
    """
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; use one of {', '.join(METHODS)}")
    n = vectors.shape[0]
    if method == "pca" or n < 4:
        return pca(vectors, 2)
    reduced = pca(vectors, 50) if vectors.shape[1] > 50 else np.asarray(vectors, np.float32)
    if method == "umap":
        umap = _import_optional("umap", "umap-learn", "umap")
        model = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
        return np.asarray(model.fit_transform(reduced), dtype=np.float32)
    manifold = _import_optional("sklearn.manifold", "scikit-learn", "tsne")
    model = manifold.TSNE(
        n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed
    )
    return np.asarray(model.fit_transform(reduced), dtype=np.float32)


@dataclass
class MapResult:
    """What :func:`plot_map` drew.

    Attributes:
        path: The PNG written (``None`` when only a figure was built).
        coords: (N, 2) layout of every row.
        method: The layout method.
        color_by: ``label``, ``cluster`` or ``None`` (one colour).
        legend: The legend entries (empty when one colour).
        thumbnails: Rows shown as thumbnails.
    """

    path: Path | None
    coords: NDArray[np.float32]
    method: str
    color_by: str | None
    legend: list[LegendEntry]
    thumbnails: list[int]


def _group_names(
    emb: Embeddings, color: ColorBy | None, clusters: Clusters | None, source: str
) -> tuple[list[str | None] | None, str | None]:
    if color is None:
        color = "label" if emb.labelled else "cluster" if clusters is not None else None
    if color is None:
        return None, None
    if color == "label":
        if not emb.labelled:
            raise ValueError(
                f"{source}: the images have no labels; use --color cluster with --clusters DIR"
            )
        return list(emb.labels), "label"
    if color == "cluster":
        if clusters is None:
            raise ValueError("--color cluster needs --clusters DIR (the output of dinokit cluster)")
        return [None if c < 0 else f"cluster {c}" for c in clusters.ids.tolist()], "cluster"
    raise ValueError(f"unknown --color {color!r}; use label or cluster")


def _load_thumbnails(emb: Embeddings, rows: NDArray[np.int64], size: int) -> list[tuple[int, Any]]:
    def load(row: int) -> tuple[int, Any]:
        try:
            return row, thumbnail_image(emb.absolute_path(row), size)
        except ImageReadError as error:
            logger.warning("map thumbnail skipped: %s", error)
            return row, None

    loaded = threaded_map(load, rows.tolist())
    return [(row, image) for row, image in loaded if image is not None]


def plot_map(
    embeddings: Embeddings | str | Path,
    out: str | Path | None,
    *,
    method: Method = "pca",
    color: ColorBy | None = None,
    clusters: str | Path | Clusters | None = None,
    thumbnails: int = 0,
    thumbnail_size: int = 48,
    max_legend: int = 20,
    overwrite: bool = False,
    seed: int = 0,
) -> MapResult:
    """Lay the embeddings out in 2-D and write the scatter as a PNG.

    Args:
        embeddings: An :class:`Embeddings` or its file.
        out: The PNG to write, or ``None`` to only compute (the result has ``path=None``).
        method: ``pca`` (default), ``umap`` or ``tsne``.
        color: ``label``, ``cluster`` or ``None`` (labels when there are any, else clusters
            when given, else one colour).
        clusters: A ``dinokit cluster`` folder, its ``assignments.csv`` or read clusters.
        thumbnails: How many images to draw at spread-out points (0: none).
        thumbnail_size: Longest side of those thumbnails in pixels.
        max_legend: Most legend entries; smaller groups are drawn grey as "other".
        overwrite: Replace an existing ``out``.
        seed: Random seed of the layout and the drawing order.

    Returns:
        The layout, legend and thumbnail rows; the PNG path.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false.
        MissingDependencyError: UMAP / t-SNE asked for without its package.
        ValueError: Colouring asked for that the data cannot give.
    """
    source = str(embeddings) if not isinstance(embeddings, Embeddings) else "embeddings"
    if out is not None:
        out = Path(out)
        check_output(out, overwrite=overwrite)
    emb = load_embeddings(embeddings)
    if len(emb) == 0:
        raise ValueError(f"{source}: no images to draw")
    if clusters is not None and not isinstance(clusters, Clusters):
        clusters = read_clusters(clusters, emb)
    names, color_by = _group_names(emb, color, clusters, source)
    coords = layout_2d(emb.vectors, method=method, seed=seed)
    none_name = "no cluster" if color_by == "cluster" else "no label"
    codes, legend = (
        color_groups(names, max_entries=max_legend, none_name=none_name)
        if names is not None
        else (None, [])
    )
    thumb_rows = spread_sample(coords, thumbnails)
    images = _load_thumbnails(emb, thumb_rows, thumbnail_size) if thumbnails else []
    result = MapResult(
        path=out,
        coords=coords,
        method=method,
        color_by=color_by,
        legend=legend,
        thumbnails=[row for row, _ in images],
    )
    if out is None:
        return result
    fig = draw_map(
        coords,
        codes=codes,
        legend=legend,
        legend_title=color_by,
        title=f"{len(emb)} images, {METHOD_NAMES[method]}",
        thumbnails=images,
        seed=seed,
    )
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    logger.debug("wrote %s (%d points, %s)", out, len(emb), method)
    return result
