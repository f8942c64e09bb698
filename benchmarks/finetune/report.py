"""``results.md``: a Markdown table per stage that has run."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .results import (
    ArmRun,
    Evaluation,
    FineTuning,
    KnnPoint,
    Probes,
    Results,
    Scratch,
    Strong,
    TimedRun,
)
from .settings import Experiment

CIFAR_TRAIN_IMAGES = 5000
"""cifar10-mini/train: the dinokit run's steps are its epochs x (this // batch)."""


def render(results: Results, exp: Experiment) -> str:
    """The tables of every stage in ``results`` (``exp``: the seeds and epochs of the runs)."""
    lines: list[str] = []
    if results.scratch:
        lines += _scratch(results.scratch, exp.batch_size)
    if results.seeds:
        lines += _seeds(results.seeds)
    if results.pretrain:
        lines += _pretrain(results.pretrain)
    if results.finetune:
        lines += _finetune(results.finetune, exp)
    if results.strong:
        lines += _strong(results.strong)
    if results.extras:
        lines += _extras(results.extras)
    if results.probes:
        lines += _probes(results.probes)
    for start, stage in (results.budget or {}).items():
        lines += _arms(
            f"The {start} start fine-tuned for a {exp.ft_budget} budget (seeds "
            + ", ".join(str(s) for s in exp.seeds)
            + ")",
            f"Before: imagenette-mini {100 * stage.before.knn:.1f}%, "
            f"cifar10-mini {100 * stage.before_cifar.knn:.1f}%",
            stage.arms,
        )
    return "\n".join(lines)


def _mean_sd(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{100 * mean:.1f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def _scratch(scratch: Scratch, batch_size: int) -> list[str]:
    dk, guide = scratch.dinokit, scratch.guide
    dk_steps = round(dk.curve[-1].epoch * (CIFAR_TRAIN_IMAGES // batch_size))
    return [
        "## From scratch on cifar10-mini, equal wall-clock",
        "",
        "| loop | wall-clock | steps | kNN at init | kNN at the end |",
        "|---|---|---|---|---|",
        f"| dinokit train | {dk.seconds / 60:.1f} min | {dk_steps} | "
        f"{100 * dk.curve[0].knn:.1f}% | **{100 * dk.curve[-1].knn:.1f}%** |",
        f"| guide's lightly loop | {guide.seconds / 60:.1f} min | {guide.steps} | "
        f"{100 * guide.curve[0].knn:.1f}% | **{100 * guide.curve[-1].knn:.1f}%** |",
        "",
    ]


def _seeds(seeds: dict[str, dict[str, list[KnnPoint]]]) -> list[str]:
    lines = [
        "## From scratch on cifar10-mini: the recipe over seeds",
        "",
        "| recipe | seeds | kNN per epoch, mean ± sd (%) | final per seed |",
        "|---|---|---|---|",
    ]
    for name, by_seed in seeds.items():
        runs = list(by_seed.values())
        epochs = min(len(c) for c in runs)
        means = " -> ".join(_mean_sd([c[e].knn for c in runs]) for e in range(epochs))
        final = ", ".join(f"{100 * c[-1].knn:.1f}" for c in runs)
        lines.append(f"| {name} | {', '.join(by_seed)} | {means} | {final} |")
    return [*lines, ""]


def _pretrain(pretrain: TimedRun) -> list[str]:
    curve = " -> ".join(f"{100 * c.knn:.1f}" for c in pretrain.curve)
    return [
        f"## The pretrained model: {len(pretrain.curve) - 1} epochs on cifar10-mini",
        "",
        f"Teacher kNN top-1 per epoch (%): {curve}; {pretrain.seconds / 60:.1f} min.",
        "",
    ]


def _arms(title: str, before: str, arms: dict[str, list[ArmRun]]) -> list[str]:
    """A fine-tuning stage: its arms on both domains, mean ± sd and per seed."""
    lines = [
        f"## {title}",
        "",
        before,
        "",
        "| arm | imagenette-mini kNN | per seed | cifar10-mini kNN after | per seed "
        "| minutes per run |",
        "|---|---|---|---|---|---|",
    ]
    for arm, runs in arms.items():
        cells = [arm]
        for values in ([r.after.knn for r in runs], [r.cifar_after.knn for r in runs]):
            cells += [_mean_sd(values), ", ".join(f"{100 * v:.1f}" for v in values)]
        cells.append(f"{sum(r.seconds for r in runs) / len(runs) / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _finetune(finetune: FineTuning, exp: Experiment) -> list[str]:
    seeds = ", ".join(str(s) for s in exp.seeds)
    return _arms(
        f"Fine-tuning on imagenette-mini (seeds {seeds}, {exp.ft_epochs} epochs)",
        f"Pretrained model before fine-tuning: {100 * finetune.before.knn:.1f}% "
        f"(cifar10-mini test: {100 * finetune.before_cifar.knn:.1f}%)",
        finetune.arms,
    )


def _strong(strong: Strong) -> list[str]:
    return _arms(
        f"From strong features: supervised on cifar10-mini ({strong.epochs} epochs, "
        f"{strong.seconds / 60:.1f} min), fine-tuned on imagenette-mini",
        f"Before: imagenette-mini {100 * strong.before.knn:.1f}%, "
        f"cifar10-mini {100 * strong.before_cifar.knn:.1f}%",
        strong.arms,
    )


def _extras(extras: dict[str, list[Evaluation]]) -> list[str]:
    lines = [
        "## Preprocessing and branch (imagenette-mini val, kNN top-1)",
        "",
        "| model | preprocess | branch | kNN | effective rank |",
        "|---|---|---|---|---|",
    ]
    for model, rows in extras.items():
        for r in rows:
            lines.append(
                f"| {model} | {r.preprocess} | {r.branch} | {100 * r.knn:.1f}% "
                f"| {r.effective_rank:.1f} |"
            )
    return [*lines, ""]


def _probes(probes: Probes) -> list[str]:
    lines = [
        f"## One change at a time: the first {probes.steps} steps from scratch",
        "",
        "| setting | teacher kNN | student kNN | teacher entropy (min -> last, of max) |",
        "|---|---|---|---|",
    ]
    for name, row in probes.rows.items():
        lines.append(
            f"| {name} | {100 * row.teacher:.1f}% | {100 * row.student:.1f}% | "
            f"{_nats(row.teacher_entropy_min)} -> {_nats(row.teacher_entropy_last)} "
            f"of {row.max_entropy:.2f} |"
        )
    return [*lines, ""]


def _nats(entropy: float | None) -> str:
    """An entropy, or "-" for a probe shorter than the logging interval (no step records)."""
    return "-" if entropy is None else f"{entropy:.2f}"
