"""Drawing the map: colours and legend, spread-out thumbnail points, the Agg figure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OTHER_COLOR = "#9e9e9e"
NONE_COLOR = "#d0d0d0"


@dataclass(frozen=True)
class LegendEntry:
    """One colour of the map: its name, how many points have it, and the colour."""

    name: str
    count: int
    color: str


def color_groups(
    names: Sequence[str | None], *, max_entries: int = 20, none_name: str = "none"
) -> tuple[NDArray[np.int64], list[LegendEntry]]:
    """Give each group a colour; past ``max_entries`` the smallest groups share "other".

    Args:
        names: (N,) group of each point (``None``: no group).
        max_entries: Most legend entries, "other" and ``none_name`` included.
        none_name: Legend name of the points without a group.

    Returns:
        (N,) index into the entries per point, and the entries (largest groups first, then
        "other", then ``none_name``).
    """
    from matplotlib import colormaps

    counts = Counter(name for name in names if name is not None)
    ranked = sorted(counts, key=lambda name: (-counts[name], name))
    none_count = sum(1 for name in names if name is None)
    slots = max(1, max_entries - (1 if none_count else 0))
    shown = ranked if len(ranked) <= slots else ranked[: slots - 1]
    cmap = colormaps["tab10" if len(shown) <= 10 else "tab20"]
    entries = [
        LegendEntry(name, counts[name], _hex(cmap(i % cmap.N))) for i, name in enumerate(shown)
    ]
    index = {name: i for i, name in enumerate(shown)}
    hidden = ranked[len(shown) :]
    if hidden:
        other = sum(counts[name] for name in hidden)
        entries.append(LegendEntry(f"{len(hidden)} others", other, OTHER_COLOR))
    other_code = len(shown)
    none_code = len(entries)
    if none_count:
        entries.append(LegendEntry(none_name, none_count, NONE_COLOR))
    codes = np.array(
        [none_code if n is None else index.get(n, other_code) for n in names], dtype=np.int64
    )
    return codes, entries


def _hex(rgba: tuple[float, float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


def spread_sample(coords: NDArray[np.floating[Any]], count: int) -> NDArray[np.int64]:
    """``count`` rows far apart from each other in 2-D (greedy farthest-point sampling).

    Args:
        coords: (N, 2) points.
        count: How many to pick (at most N).

    Returns:
        (count,) row indices, the point nearest the centre first.
    """
    n = coords.shape[0]
    count = min(count, n)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    span = np.ptp(coords, axis=0)
    pts = (coords - coords.min(axis=0)) / np.where(span > 0, span, 1.0)
    chosen = [int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))]
    nearest = ((pts - pts[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(count - 1):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, ((pts - pts[pick]) ** 2).sum(axis=1))
    return np.array(chosen, dtype=np.int64)


def draw_map(
    coords: NDArray[np.floating[Any]],
    *,
    codes: NDArray[np.int64] | None = None,
    legend: Sequence[LegendEntry] = (),
    legend_title: str | None = None,
    title: str = "",
    thumbnails: Sequence[tuple[int, Any]] = (),
    seed: int = 0,
) -> Figure:
    """Draw the scatter (and thumbnails) on a new Agg figure.

    Args:
        coords: (N, 2) points.
        codes: (N,) index into ``legend`` per point, or ``None`` for one colour.
        legend: Colours and names, as from :func:`color_groups`.
        legend_title: Title of the legend box.
        title: Figure title.
        thumbnails: ``(row, PIL image)`` pairs drawn at their points.
        seed: Drawing order shuffle (so no group is always on top).

    Returns:
        The figure (not shown, not saved).
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    n = coords.shape[0]
    fig = Figure(figsize=(11 if legend else 9, 8), dpi=120)
    ax = fig.add_subplot()
    order = np.random.default_rng(seed).permutation(n)
    palette = np.array([entry.color for entry in legend] or ["#1f77b4"])
    colors = palette[codes[order]] if codes is not None else palette[np.zeros(n, dtype=np.int64)]
    size = float(np.clip(30000 / max(n, 1), 1.0, 30.0))
    ax.scatter(
        coords[order, 0], coords[order, 1], c=colors, s=size, alpha=0.8, linewidths=0,
        rasterized=True,
    )  # fmt: skip
    for row, image in thumbnails:
        frame = palette[codes[row]] if codes is not None else palette[0]
        box = AnnotationBbox(
            OffsetImage(np.asarray(image), zoom=1.0),
            (float(coords[row, 0]), float(coords[row, 1])),
            frameon=True,
            pad=0.1,
            bboxprops={"edgecolor": frame, "linewidth": 1.5},
        )
        ax.add_artist(box)
    if legend:
        handles = [
            Line2D([], [], marker="o", linestyle="", color=e.color, label=f"{e.name} ({e.count})")
            for e in legend
        ]
        ax.legend(
            handles=handles, title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0),
            fontsize="small", frameon=False,
        )  # fmt: skip
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig
