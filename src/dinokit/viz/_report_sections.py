"""The sections of the HTML report, each from data already chosen and thumbnails made."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from ..embeddings import Embeddings
from . import _report_html as h
from .inputs import Clusters, DuplicateGroup

TileOf = Callable[..., h.Tile]
"""``tile_of(row, caption, query=False)``: the tile of an embedding row."""

MAX_LABELS = 50
MAX_SKIPPED = 200


def _model_rows(meta: dict[str, Any]) -> list[tuple[str, object]]:
    record = meta.get("model")
    rows: list[tuple[str, object]] = []
    if isinstance(record, dict):
        rows.append(("Model", record.get("model") or record.get("architecture") or "in memory"))
        if record.get("architecture"):
            rows.append(("Architecture", record["architecture"]))
        if record.get("weights"):
            rows.append(("Weights", record["weights"]))
    elif record is not None:
        rows.append(("Model", record))
    for key, name in (
        ("branch", "Branch"),
        ("fingerprint", "Fingerprint"),
        ("preprocess", "Preprocessing"),
        ("size", "Input size"),
        ("feature", "Feature"),
        ("normalize", "L2-normalised"),
        ("precision", "Precision"),
        ("dinokit_version", "dinokit version"),
    ):
        if meta.get(key) is not None:
            rows.append((name, meta[key]))
    return rows


def summary_section(
    emb: Embeddings, found: Clusters | None, groups: list[DuplicateGroup] | None
) -> str:
    """Counts, the recipe of the vectors, labels and skipped files."""
    meta = emb.metadata
    skipped = list(meta.get("skipped") or [])
    rows: list[tuple[str, object]] = [("Images", len(emb)), ("Vector width", emb.dim)]
    rows += _model_rows(meta)
    for root in meta.get("roots") or []:
        rows.append(("Input folder", root))
    rows.append(("Skipped files", len(skipped)))
    if found is not None:
        clusters = len(np.unique(found.ids[found.ids >= 0]))
        rows.append(("Clusters", f"{clusters} ({found.assigned} images assigned)"))
    if groups is not None:
        members = sum(g.size for g in groups)
        rows.append(("Duplicate groups", f"{len(groups)} ({members} images)"))
    body = [h.table(("", ""), rows)]
    if emb.labelled:
        counts = Counter("(no label)" if label is None else label for label in emb.labels)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        body.append(f"<h3>Labels <small>{len(counts)}</small></h3>")
        body.append(h.table(("label", "images"), ranked[:MAX_LABELS], numeric=1))
        if len(ranked) > MAX_LABELS:
            body.append(h.note(f"and {len(ranked) - MAX_LABELS} more labels"))
    if skipped:
        lines = [f"{s.get('path', '?')}: {s.get('reason', '')}" for s in skipped[:MAX_SKIPPED]]
        more = f" (first {MAX_SKIPPED})" if len(skipped) > MAX_SKIPPED else ""
        body.append(h.details(f"Skipped files: {len(skipped)}{more}", h.code_list(lines)))
    return "\n".join(body)


def map_section(ref: h.ThumbRef, description: str) -> str:
    """The map image."""
    image = (
        f'<img src="{h.esc(ref.src)}" width="{ref.width}" height="{ref.height}" '
        'alt="2-D map of the embeddings">'
    )
    return f'{h.note(description)}<div class="map">{image}</div>'


def clusters_section(
    shown: list[tuple[int, int, list[int]]], hidden: int, found: Clusters | None, tile_of: TileOf
) -> str:
    """One strip per cluster, closest to the centre first."""
    if found is None:
        return h.note("No clusters given: run dinokit cluster and pass --clusters DIR.")
    total = len(shown) + hidden
    parts = [h.note(f"{total} clusters, {found.assigned} images; closest to the centre first.")]
    for cluster, size, rows in shown:
        tiles = [tile_of(r, _distance(float(found.distances[r]))) for r in rows]
        parts.append(
            h.group(
                f"Cluster {cluster}",
                f"{size} images",
                h.strip(tiles, size - len(rows)),
                attrs={"data-cluster": cluster, "data-size": size},
            )
        )
    if hidden:
        parts.append(h.note(f"{hidden} smaller clusters not shown."))
    return "\n".join(parts)


def _distance(value: float) -> str:
    return "" if math.isnan(value) else f"d {value:.3f}"


def neighbours_section(
    queries: list[tuple[int, list[tuple[int, float]]]], emb: Embeddings, tile_of: TileOf
) -> str:
    """Each sampled query image followed by its nearest neighbours (cosine similarity)."""
    if not queries:
        return h.note("Too few images for neighbours.")
    k = len(queries[0][1])
    parts = [
        h.note(f"{len(queries)} images picked at random, each with its {k} nearest neighbours.")
    ]
    for query, hits in queries:
        tiles = [tile_of(query, "query", query=True)]
        tiles += [tile_of(r, f"{s:.3f}") for r, s in hits]
        label = emb.labels[query]
        title = emb.paths[query] if label is None else f"{emb.paths[query]} ({label})"
        parts.append(h.group(title, "", h.strip(tiles), attrs={"data-query": query}))
    return "\n".join(parts)


def duplicates_section(
    shown: list[DuplicateGroup],
    per_group: int,
    groups: list[DuplicateGroup] | None,
    tile_of: TileOf,
) -> str:
    """One strip per duplicate group, largest groups first."""
    if groups is None:
        return h.note(
            "No duplicate groups given: run dinokit duplicates and pass --duplicates groups.csv."
        )
    if not groups:
        return h.note("No duplicate groups.")
    parts = [h.note(f"{len(groups)} groups, {sum(g.size for g in groups)} images.")]
    for group in shown:
        pairs = list(zip(group.rows, group.scores, strict=True))[:per_group]
        tiles = [tile_of(r, "" if math.isnan(s) else f"{s:.3f}") for r, s in pairs]
        body = h.strip(tiles, len(group.rows) - len(tiles))
        if group.missing:
            body += h.note(f"{len(group.missing)} not in these embeddings")
        parts.append(
            h.group(
                f"Group {group.name}",
                f"{group.size} images" + (f", {group.kind}" if group.kind else ""),
                body,
                attrs={"data-group": group.name, "data-size": group.size},
            )
        )
    if len(groups) > len(shown):
        parts.append(h.note(f"{len(groups) - len(shown)} smaller groups not shown."))
    return "\n".join(parts)
