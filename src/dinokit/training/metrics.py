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
    epoch: int | float  # fractional for a run that ended inside an epoch (a budget)
    step: int


RAW_PIXELS = "raw pixels (32 px)"
"""The name of the raw-pixel baseline (``dinokit evaluate``'s row of the same name)."""


@dataclass(frozen=True)
class Baseline:
    """A reference score beside the monitor's: kNN top-1 (fraction) of ``name``.

    ``is_start`` marks a baseline that is the run's own start (random init from scratch),
    recorded rather than measured twice.
    """

    name: str
    knn_top1: float
    is_start: bool = False


@dataclass(frozen=True)
class KnnSummary:
    """What the kNN monitor says of a whole run: the starting model, the best and the last
    measurement (the first of equal bests), with ``k`` neighbours, and the baselines."""

    k: int
    start: KnnPoint
    best: KnnPoint
    last: KnnPoint
    baselines: tuple[Baseline, ...] = ()

    @property
    def worse_than_start(self) -> bool:
        """The last measurement is below the starting model's."""
        return self.last.knn_top1 < self.start.knn_top1

    def baseline(self, name: str) -> Baseline | None:
        """The baseline called ``name``, if the run measured it."""
        return next((b for b in self.baselines if b.name == name), None)

    def line(self) -> str:
        """``kNN top-1 (k=20): start 26.1% -> best 28.6% (epoch 2) -> last 27.8%; raw
        pixels 38.3%, random init 25.0%`` (from scratch: ``start 25.3% (random init)``)."""
        start = f"start {100 * self.start.knn_top1:.1f}%"
        start += "".join(f" ({b.name})" for b in self.baselines if b.is_start)
        others = [
            f"{b.name.split(' (')[0]} {100 * b.knn_top1:.1f}%"  # "raw pixels", not "(32 px)"
            for b in self.baselines
            if not b.is_start
        ]
        return (
            f"kNN top-1 (k={self.k}): {start} -> "
            f"best {100 * self.best.knn_top1:.1f}% (epoch {self.best.epoch}) -> "
            f"last {100 * self.last.knn_top1:.1f}%" + (f"; {', '.join(others)}" if others else "")
        )

    def below_raw_pixels(self) -> str | None:
        """One sentence when the last (or best) measurement is below raw pixels, else None."""
        pixels = self.baseline(RAW_PIXELS)
        if pixels is None or self.last.knn_top1 >= pixels.knn_top1:
            return None
        last_gap = 100 * (pixels.knn_top1 - self.last.knn_top1)
        if self.best.knn_top1 >= pixels.knn_top1:
            return (
                f"The last is {last_gap:.1f} points below raw pixels "
                f"({100 * pixels.knn_top1:.1f}%); the best (epoch {self.best.epoch}) beat them."
            )
        best_gap = 100 * (pixels.knn_top1 - self.best.knn_top1)
        return (
            f"The features do not yet beat raw pixels ({100 * pixels.knn_top1:.1f}%): the "
            f"best is {best_gap:.1f} points below them, the last {last_gap:.1f}."
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` form: the three points, ``k``, the baselines, the line and
        the verdicts."""
        return asdict(self) | {
            "line": self.line(),
            "worse_than_start": self.worse_than_start,
            "below_raw_pixels": self.below_raw_pixels(),
        }


def knn_summary(records: list[dict[str, Any]]) -> KnnSummary | None:
    """Start, best and last of the ``kind: knn`` records (None without any), and the
    ``kind: baseline`` records.

    The start is the first record: the teacher before the first step, which a run with the
    monitor measures first.
    """
    points = [
        KnnPoint(float(r["knn_top1"]), _epoch(r["epoch"]), int(r["step"]))
        for r in records
        if r.get("kind") == "knn"
    ]
    if not points:
        return None
    k = next(int(r["k"]) for r in records if r.get("kind") == "knn")
    best = max(points, key=lambda p: p.knn_top1)  # max keeps the first of equal values
    baselines = tuple(
        Baseline(str(r["name"]), float(r["knn_top1"]), bool(r.get("is_start", False)))
        for r in records
        if r.get("kind") == "baseline"
    )
    return KnnSummary(k=k, start=points[0], best=best, last=points[-1], baselines=baselines)


@dataclass(frozen=True)
class LabelFreePoint:
    """One label-free measurement of the teacher after ``epoch`` epochs, at ``step``."""

    effective_rank: float
    uniformity: float
    epoch: int | float  # fractional for a run that ended inside an epoch (a budget)
    step: int


LABEL_FREE_ADVICE = (
    "Without labels this cannot tell better from worse: pass --eval-train/--eval-val with a "
    "few hundred labelled images to measure it."
)


@dataclass(frozen=True)
class LabelFreeSummary:
    """What the label-free check says of a whole run without labels: the start, the last
    measurement, and the alarms raised (``(epoch, reason)``, none when healthy)."""

    start: LabelFreePoint
    last: LabelFreePoint
    alarms: tuple[tuple[int | float, str], ...] = ()

    @property
    def collapsed(self) -> bool:
        """Some measurement raised the collapse alarm."""
        return bool(self.alarms)

    def line(self) -> str:
        """``label-free check: effective rank 29.6 -> 52.1, uniformity -1.58 -> -3.36: no
        collapse. Without labels this cannot tell better from worse: ...``."""
        verdict = (
            f"collapse at epoch {self.alarms[0][0]} ({self.alarms[0][1]})"
            if self.alarms
            else "no collapse"
        )
        return (
            f"label-free check: effective rank {self.start.effective_rank:.1f} -> "
            f"{self.last.effective_rank:.1f}, uniformity {self.start.uniformity:.2f} -> "
            f"{self.last.uniformity:.2f}: {verdict}. {LABEL_FREE_ADVICE}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` form: start, last, the alarms, the line and the verdict."""
        return {
            "start": asdict(self.start),
            "last": asdict(self.last),
            "alarms": [{"epoch": epoch, "reason": reason} for epoch, reason in self.alarms],
            "collapsed": self.collapsed,
            "line": self.line(),
        }


def label_free_point(record: dict[str, Any]) -> LabelFreePoint:
    """The point of one ``kind: label_free`` record."""
    return LabelFreePoint(
        float(record["effective_rank"]),
        float(record["uniformity"]),
        _epoch(record["epoch"]),
        int(record["step"]),
    )


def label_free_summary(records: list[dict[str, Any]]) -> LabelFreeSummary | None:
    """Start, last and alarms of the ``kind: label_free`` records (None without any); the
    start is the first, measured before the first step."""
    kept = [r for r in records if r.get("kind") == "label_free"]
    if not kept:
        return None
    alarms = tuple((_epoch(r["epoch"]), str(r["alarm"])) for r in kept if r.get("alarm"))
    return LabelFreeSummary(label_free_point(kept[0]), label_free_point(kept[-1]), alarms)


def plot_curves(metrics_path: Path, out: Path) -> Path | None:
    """Draw loss, lr, teacher temperature/entropy and kNN accuracy (without labels, the
    label-free effective rank) against steps."""
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
    label_free = [r for r in records if r.get("kind") == "label_free"]
    if knn:
        axes[3].plot([r["step"] for r in knn], [100 * r["knn_top1"] for r in knn], "o-")
        axes[3].set_ylabel("%")
    elif label_free:  # no labels: the collapse alarm's effective rank instead
        ranks = [r["effective_rank"] for r in label_free]
        axes[3].plot([r["step"] for r in label_free], ranks, "o-")
        axes[3].set_title("label-free: effective rank")
    else:
        axes[3].text(
            0.5,
            0.5,
            "no kNN monitor\n(--eval-train/--eval-val)",
            ha="center",
            va="center",
            transform=axes[3].transAxes,
        )
    if axes[0].get_legend_handles_labels()[0]:  # a run shorter than --log-every has none
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _epoch(value: Any) -> int | float:
    """A record's epoch: whole, or fractional when a run ended inside one."""
    number = float(value)
    return int(number) if number.is_integer() else number
