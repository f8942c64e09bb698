"""``metrics.jsonl`` (one JSON object per line), its TensorBoard copy, and ``curves.png``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .tensorboard import TensorBoardLog

logger = logging.getLogger(__name__)


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
