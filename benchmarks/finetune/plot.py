"""``curves.png``: kNN against epochs, from scratch and for each fine-tuning stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .results import FineTuning, KnnPoint, Results, Scratch


def plot_results(results: Results, path: Path) -> None:
    """One panel from scratch (empty when that stage has not run), one per fine-tuning stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arm_panels = [
        (stage, title)
        for stage, title in (
            (results.finetune, "Fine-tuning the DINO model on imagenette-mini"),
            (results.strong, "Fine-tuning strong features on imagenette-mini"),
        )
        if stage
    ]
    panels = 1 + len(arm_panels)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    axes = axes[0]
    if results.scratch:
        # The same run without KoLeo (seed 0 of the seeds stage), when that stage ran.
        without = (results.seeds or {}).get("recipe without KoLeo", {}).get("0")
        _scratch_panel(axes[0], results.scratch, without)
    for ax, (stage, title) in zip(axes[1:], arm_panels, strict=True):
        _arms_panel(ax, stage, title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _knn(ax: Any, curve: list[KnnPoint], style: str, **kwargs: Any) -> None:
    ax.plot([c.epoch for c in curve], [100 * c.knn for c in curve], style, **kwargs)


def _axes(ax: Any, title: str, **kwargs: Any) -> None:
    ax.set_title(title, **kwargs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("teacher kNN top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend()


def _scratch_panel(ax: Any, scratch: Scratch, without_koleo: list[KnnPoint] | None) -> None:
    _knn(ax, scratch.dinokit.curve, "o-", label="dinokit train")
    _knn(ax, scratch.guide.curve, "o-", label="guide's lightly loop")
    if without_koleo:
        _knn(ax, without_koleo, "o--", color="C0", alpha=0.6, label="dinokit without KoLeo")
    _axes(ax, "From scratch, cifar10-mini (equal wall-clock)")


def _arms_panel(ax: Any, stage: FineTuning, title: str) -> None:
    for i, (arm, runs) in enumerate(stage.arms.items()):
        for j, run in enumerate(runs):
            _knn(ax, run.curve, "o-", color=f"C{i}", alpha=0.8, label=arm if j == 0 else None)
    _axes(ax, f"{title} (each seed)", fontsize=10)
