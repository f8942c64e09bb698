"""A one-page static HTML report of an embeddings file.

Sections: a summary (model, options, counts, skipped files), the 2-D map, clusters as
thumbnail strips (closest to the centre first), nearest neighbours of a sample of images, and
duplicate groups. The page has no script and loads nothing from outside: the thumbnails
(small JPEGs, lazily loaded) and the map sit in ``<name>_files/`` next to the page and are
linked relatively, or are embedded as data URIs with ``inline=True`` (one file to share).

Large collections stay light: every section shows a capped number of images, thumbnails are
decoded in parallel and streamed to disk, and nearest neighbours are found by
:func:`dinokit.search.neighbours` (exact, a bounded block of scores at a time), so memory
does not grow with the number of images.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .._files import atomic_write, default_mode
from .._version import __version__
from ..data.thumbnails import stream_thumbnails
from ..embeddings import Embeddings
from ..search.vectors import neighbours
from . import _report_html as h
from .inputs import (
    Clusters,
    DuplicateGroup,
    check_output,
    load_embeddings,
    read_clusters,
    read_duplicate_groups,
)
from .map import METHOD_NAMES, Method, plot_map

logger = logging.getLogger(__name__)


@dataclass
class ReportResult:
    """What :func:`write_report` wrote.

    Attributes:
        path: The HTML page.
        files: The folder of thumbnails and the map (``None`` with ``inline=True``).
        images: Rows in the embeddings.
        thumbnails: Thumbnails shown (distinct images).
        unreadable: Shown images whose file could not be read.
        sections: Section ids in page order.
        seconds: Time taken.
    """

    path: Path
    files: Path | None
    images: int
    thumbnails: int
    unreadable: int
    sections: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Plan:
    """Which rows each section shows (decided before any image is decoded)."""

    clusters: list[tuple[int, int, list[int]]] = field(default_factory=list)  # id, size, rows
    hidden_clusters: int = 0
    queries: list[tuple[int, list[tuple[int, float]]]] = field(default_factory=list)
    groups: list[DuplicateGroup] = field(default_factory=list)
    per_group: int = 12

    def rows(self) -> list[int]:
        wanted = {r for _, _, rows in self.clusters for r in rows}
        for query, hits in self.queries:
            wanted.add(query)
            wanted.update(r for r, _ in hits)
        return sorted(wanted.union(r for g in self.groups for r in g.rows[: self.per_group]))


def write_report(
    embeddings: Embeddings | str | Path,
    out: str | Path,
    *,
    clusters: str | Path | None = None,
    duplicates: str | Path | None = None,
    overwrite: bool = False,
    inline: bool = False,
    queries: int = 24,
    neighbours: int = 8,
    per_cluster: int = 24,
    max_clusters: int = 100,
    max_groups: int = 100,
    per_group: int = 12,
    thumbnail_size: int = 96,
    map_method: Method = "pca",
    workers: int | None = None,
    seed: int = 0,
) -> ReportResult:
    """Write the HTML report of an embeddings file.

    Args:
        embeddings: An :class:`Embeddings` or its file.
        out: The HTML file; thumbnails go to ``<stem>_files/`` beside it.
        clusters: A ``dinokit cluster`` folder (or its ``assignments.csv``).
        duplicates: A ``dinokit duplicates`` ``groups.csv``.
        overwrite: Replace an existing page and its files folder.
        inline: Embed thumbnails and the map as data URIs (one file, larger).
        queries: Images whose nearest neighbours are shown (a seeded random sample).
        neighbours: Neighbours per query.
        per_cluster: Images shown per cluster (closest to the centre first).
        max_clusters: Clusters shown (the largest when there are more).
        max_groups: Duplicate groups shown (the largest first).
        per_group: Images shown per duplicate group.
        thumbnail_size: Longest thumbnail side in pixels.
        map_method: Layout of the map (``pca``, ``umap``, ``tsne``).
        workers: Thumbnail decoding threads (default: the CPUs, at most 8).
        seed: Seed of the query sample and the map.

    Returns:
        Where it was written and what it shows.

    Raises:
        FileExistsError: The page or its files folder exists and ``overwrite`` is false.
        FileNotFoundError: A clusters/duplicates file is missing.
        ValueError: A clusters/duplicates file has the wrong columns, or no images.
    """
    started = time.perf_counter()
    out = Path(out)
    files = None if inline else out.with_name(f"{out.stem}_files")
    for target in (out, files):
        if target is not None:
            check_output(target, overwrite=overwrite)
    emb = load_embeddings(embeddings)
    if len(emb) == 0:
        raise ValueError(f"{embeddings}: no images to report on")
    found = read_clusters(clusters, emb) if clusters is not None else None
    groups = read_duplicate_groups(duplicates, emb) if duplicates is not None else None
    plan = _plan(emb, found, (queries, neighbours, seed), per_cluster, max_clusters)
    plan.groups, plan.per_group = (groups or [])[:max_groups], per_group
    result = _write_page(
        out, files, emb, found, groups, plan, thumbnail_size, map_method, workers, seed
    )
    result.seconds = time.perf_counter() - started
    logger.info(
        "wrote %s (%d images, %d thumbnails, %.1f s)",
        out,
        result.images,
        result.thumbnails,
        result.seconds,
    )
    return result


def _write_page(
    out: Path,
    files: Path | None,
    emb: Embeddings,
    found: Clusters | None,
    groups: list[DuplicateGroup] | None,
    plan: _Plan,
    size: int,
    map_method: Method,
    workers: int | None,
    seed: int,
) -> ReportResult:
    """Stage the thumbnails and the map, then publish them and the page (``files=None``:
    everything inline)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.stem}_files.", dir=out.parent))
    inline, files_name = files is None, "" if files is None else files.name
    try:
        staging.chmod(default_mode(folder=True))
        (staging / "t").mkdir()
        thumbs, unreadable = _write_thumbnails(
            emb, plan.rows(), staging, files_name, inline, size, workers
        )
        map_ref = _draw_map(emb, found, staging, files_name, inline, map_method, seed)
        sections = _sections(emb, found, groups, plan, thumbs, unreadable, map_ref)
        page = h.page(
            title=f"dinokit report: {out.stem}", sections=sections, size=size, version=__version__
        )
        _publish(out, page, None if files is None else (staging, files))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReportResult(
        path=out,
        files=files,
        images=len(emb),
        thumbnails=len(thumbs),
        unreadable=len(unreadable),
        sections=[ident for ident, _, _ in sections],
    )


def _plan(
    emb: Embeddings,
    found: Clusters | None,
    sample: tuple[int, int, int],
    per_cluster: int,
    max_clusters: int,
) -> _Plan:
    plan = _Plan()
    if found is not None:
        ids, counts = np.unique(found.ids[found.ids >= 0], return_counts=True)
        sizes = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        kept = sorted(sorted(sizes, key=lambda c: (-sizes[c], c))[:max_clusters])
        plan.hidden_clusters = len(sizes) - len(kept)
        plan.clusters = [(c, sizes[c], found.members(c)[:per_cluster].tolist()) for c in kept]
    queries, per_query, seed = sample
    if queries > 0 and per_query > 0 and len(emb) > 1:
        rng = np.random.default_rng(seed)
        picked = np.sort(rng.choice(len(emb), size=min(queries, len(emb)), replace=False))
        k = min(per_query, len(emb) - 1)
        sim, idx = neighbours(emb.vectors[picked], emb.vectors, k, exclude=picked)
        plan.queries = [
            (int(q), [(int(r), float(s)) for r, s in zip(idx[i], sim[i], strict=True)])
            for i, q in enumerate(picked)
        ]
    return plan


def _write_thumbnails(
    emb: Embeddings,
    rows: list[int],
    staging: Path,
    files_name: str,
    inline: bool,
    size: int,
    workers: int | None,
) -> tuple[dict[int, h.ThumbRef], dict[int, str]]:
    """Decode and store the thumbnails of ``rows``; returns their refs and unreadable rows."""
    refs: dict[int, h.ThumbRef] = {}
    unreadable: dict[int, str] = {}
    paths = (emb.absolute_path(row) for row in rows)
    for row, thumb in zip(rows, stream_thumbnails(paths, size, workers=workers), strict=True):
        if thumb.data is None:
            unreadable[row] = thumb.error or "unreadable"
            continue
        if inline:
            src = "data:image/jpeg;base64," + base64.b64encode(thumb.data).decode("ascii")
        else:
            (staging / "t" / f"{row}.jpg").write_bytes(thumb.data)
            src = f"{quote(files_name)}/t/{row}.jpg"
        refs[row] = h.ThumbRef(src, thumb.width, thumb.height)
    if unreadable:
        logger.warning("%d images shown in the report could not be read", len(unreadable))
    return refs, unreadable


def _draw_map(
    emb: Embeddings,
    found: Clusters | None,
    staging: Path,
    files_name: str,
    inline: bool,
    method: Method,
    seed: int,
) -> tuple[h.ThumbRef, str]:
    """Draw the map into the staging folder; returns its ref and a one-line description."""
    from PIL import Image

    result = plot_map(emb, staging / "map.png", method=method, clusters=found, seed=seed)
    with Image.open(staging / "map.png") as image:
        width, height = image.size
    if inline:
        data = base64.b64encode((staging / "map.png").read_bytes()).decode("ascii")
        src = "data:image/png;base64," + data
    else:
        src = f"{quote(files_name)}/map.png"
    by = f", coloured by {result.color_by}" if result.color_by else ""
    return h.ThumbRef(src, width, height), f"{METHOD_NAMES[method]} of {len(emb)} images{by}."


def _sections(
    emb: Embeddings,
    found: Clusters | None,
    groups: list[DuplicateGroup] | None,
    plan: _Plan,
    thumbs: dict[int, h.ThumbRef],
    unreadable: dict[int, str],
    map_ref: tuple[h.ThumbRef, str],
) -> list[tuple[str, str, str]]:
    from ._report_sections import (
        clusters_section,
        duplicates_section,
        map_section,
        neighbours_section,
        summary_section,
    )

    def tile_of(row: int, caption: str, *, query: bool = False) -> h.Tile:
        return h.Tile(
            path=emb.paths[row],
            caption=caption,
            thumb=thumbs.get(row),
            reason=unreadable.get(row, ""),
            query=query,
        )

    clusters_html = clusters_section(plan.clusters, plan.hidden_clusters, found, tile_of)
    duplicates_html = duplicates_section(plan.groups, plan.per_group, groups, tile_of)
    return [
        ("summary", "Summary", summary_section(emb, found, groups)),
        ("map", "Map", map_section(*map_ref)),
        ("clusters", "Clusters", clusters_html),
        ("neighbours", "Nearest neighbours", neighbours_section(plan.queries, emb, tile_of)),
        ("duplicates", "Duplicates", duplicates_html),
    ]


def _publish(out: Path, page: str, folder: tuple[Path, Path] | None) -> None:
    """Move the staged files folder into place, then write the page atomically."""
    if folder is not None:
        staged, final = folder
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.old.", dir=out.parent)
        os.close(fd)
        old = Path(name)
        old.unlink()
        if final.exists():
            os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    atomic_write(out, lambda tmp: tmp.write_text(page, encoding="utf-8"))
