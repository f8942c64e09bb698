"""``metrics.jsonl`` (one JSON object per line), its TensorBoard copy, and ``curves.png``."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .tensorboard import TensorBoardLog

logger = logging.getLogger(__name__)


METRICS_FILE = "metrics.jsonl"
"""The run's metric records (one JSON object per line), in the run folder."""


class MetricsLog:
    """Appends records to ``metrics.jsonl``; on resume, drops records past the checkpoint.

    Args:
        path: The JSON-lines file.
        resume_step: Global step of the checkpoint resumed from (None for a new run):
            records with a larger step were lost with the interrupted steps and are removed.
        tensorboard: Also write every record as TensorBoard scalars next to ``path``.
    """

    def __init__(
        self, path: Path, *, resume_step: int | None = None, tensorboard: bool = False
    ) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            kept = [r for r in read_metrics(path) if int(r.get("step", 0)) <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._tensorboard: TensorBoardLog | None = None
        if tensorboard:
            self._tensorboard = TensorBoardLog(path.parent, resume_step=resume_step)
        self._handle = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to disk."""
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        if self._tensorboard is not None:
            self._tensorboard.write(record)

    def close(self) -> None:
        """Close the file (and the TensorBoard events); closing twice is harmless."""
        self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` (a truncated last line is ignored)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


@dataclass(frozen=True)
class KnnPoint:
    """One kNN measurement: top-1 accuracy (fraction) after ``epoch`` epochs, at ``step``."""

    knn_top1: float
    epoch: int
    step: int


@dataclass(frozen=True)
class KnnSummary:
    """What the kNN monitor says of a whole run: the starting model, the best and the last
    measurement (the first of equal bests), with ``k`` neighbours."""

    k: int
    start: KnnPoint
    best: KnnPoint
    last: KnnPoint

    @property
    def worse_than_start(self) -> bool:
        """The last measurement is below the starting model's."""
        return self.last.knn_top1 < self.start.knn_top1

    def line(self) -> str:
        """``kNN top-1 (k=20): start 26.1% -> best 28.6% (epoch 2) -> last 27.8%``."""
        return (
            f"kNN top-1 (k={self.k}): start {100 * self.start.knn_top1:.1f}% -> "
            f"best {100 * self.best.knn_top1:.1f}% (epoch {self.best.epoch}) -> "
            f"last {100 * self.last.knn_top1:.1f}%"
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` form: the three points, ``k``, the line and the verdict."""
        return asdict(self) | {"line": self.line(), "worse_than_start": self.worse_than_start}


def knn_summary(records: list[dict[str, Any]]) -> KnnSummary | None:
    """Start, best and last of the ``kind: knn`` records (None without any).

    The start is the first record: the teacher before the first step, which a run with the
    monitor measures first.
    """
    points = [
        KnnPoint(float(r["knn_top1"]), int(r["epoch"]), int(r["step"]))
        for r in records
        if r.get("kind") == "knn"
    ]
    if not points:
        return None
    k = next(int(r["k"]) for r in records if r.get("kind") == "knn")
    best = max(points, key=lambda p: p.knn_top1)  # max keeps the first of equal values
    return KnnSummary(k=k, start=points[0], best=best, last=points[-1])


def plot_curves(metrics_path: Path, out: Path) -> Path | None:
    """Draw loss, lr, teacher temperature/entropy and kNN accuracy against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r for r in records if r.get("kind") == "step"]
    knn = [r for r in records if r.get("kind") == "knn"]
    if not steps and not knn:
        return None
    panels: list[tuple[str, list[tuple[str, str]]]] = [
        ("loss", [("loss", "DINO loss"), ("kl", "KL(teacher||student)"), ("koleo", "KoLeo")]),
        ("learning rate", [("lr", "lr")]),
        ("teacher", [("teacher_entropy", "entropy (nats)")]),
        ("kNN top-1", []),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, series) in zip(axes, panels, strict=True):
        for key, label in series:
            xs = [r["step"] for r in steps if key in r]
            if xs:  # KoLeo only in runs that use it
                ax.plot(xs, [r[key] for r in steps if key in r], label=label, lw=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
    twin = axes[2].twinx()
    twin.plot([r["step"] for r in steps], [r.get("teacher_temp") for r in steps], "C1--", lw=1)
    twin.set_ylabel("teacher temperature", color="C1")
    if knn:
        axes[3].plot([r["step"] for r in knn], [100 * r["knn_top1"] for r in knn], "o-")
        axes[3].set_ylabel("%")
    else:
        axes[3].text(
            0.5,
            0.5,
            "no kNN monitor\n(--eval-train/--eval-val)",
            ha="center",
            va="center",
            transform=axes[3].transAxes,
        )
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
