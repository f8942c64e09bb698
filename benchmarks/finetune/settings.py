"""What a run of the experiment is given: the sizes of each stage, and the shared recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODEL = "vit_small32"
# The crops both scratch loops share (2 x 32 px + 4 x 16 px); Experiment.batch_size the batch.
CROPS = {"global_size": 32, "local_size": 16, "local_crops": 4}
# dinokit's recipe for short runs from scratch on small images (docs/finetuning.md says why).
SCRATCH_RECIPE: dict[str, Any] = {
    "lr": 4e-3,  # per 256 images: 2e-3 at batch 128, with the automatic 10% warm-up
    "out_dim": 256,
    "momentum": 0.99,
    "use_bn_in_head": True,
    "drop_path": 0.0,
    "freeze_last_layer": 0.0,
    "koleo": 0.1,  # DINOv2's weight: keeps the batch's features apart while targets form
}
# The guide's hyperparameters for its loop (AdamW 1e-3, 2048 prototypes, EMA 0.996 -> 1).
GUIDE_LR = 1e-3
GUIDE_OUT_DIM = 2048


@dataclass(frozen=True)
class Experiment:
    """The command line of ``finetune_experiment.py`` (its defaults are these).

    Attributes:
        out: Where every run, ``results.json``, ``results.md`` and ``curves.png`` go.
        data: The folder holding ``cifar10-mini`` and ``imagenette-mini``.
        scratch_epochs: Epochs of the from-scratch runs (and of the probes' schedule).
        budget_min: The guide's loop runs this long, or as long as the dinokit run if longer
            (0: as long as the dinokit run).
        pretrain_epochs: Epochs of the "pretrained" model.
        ft_epochs: Epochs of each fine-tuning run.
        seeds: Seeds of the recipe and fine-tuning runs.
        threads: CPU threads of each run.
        probe_steps: Steps of each single-change probe.
        supervised_epochs: Epochs of the supervised stand-in for strong features.
        strong_seeds: Seeds of the fine-tuning runs from strong features.
        batch_size: Batch of the runs on cifar10-mini (5,000 images); the fine-tuning runs on
            imagenette-mini (1,000 images) use half of it.
        ft_budget: ``--budget`` of each run of the ``budget`` stage (its batch is automatic).
    """

    out: Path = Path("runs/finetune-experiment")
    data: Path = REPO.parent / "shared" / "data"
    scratch_epochs: int = 3
    budget_min: float = 15.0
    pretrain_epochs: int = 8
    ft_epochs: int = 4
    seeds: tuple[int, ...] = (0, 1, 2)
    threads: int = 2
    probe_steps: int = 50
    supervised_epochs: int = 10
    strong_seeds: tuple[int, ...] = (0, 1)
    batch_size: int = 128
    ft_budget: str = "15m"

    @property
    def cifar(self) -> Path:
        """``cifar10-mini``: ``train`` (the pretraining domain) and ``test``."""
        return self.data / "cifar10-mini"

    @property
    def nette(self) -> Path:
        """``imagenette-mini``: ``train`` (the new domain) and ``val``."""
        return self.data / "imagenette-mini"

    @property
    def ft_batch_size(self) -> int:
        """Batch of the fine-tuning runs (64: 15 steps per epoch on 1,000 images)."""
        return self.batch_size // 2


SMOKE: dict[str, Any] = {
    "scratch_epochs": 1,
    "budget_min": 0.0,
    "pretrain_epochs": 1,
    "ft_epochs": 1,
    "seeds": [0],
    "probe_steps": 2,
    "supervised_epochs": 1,
    "strong_seeds": [0],
    "batch_size": 8,
    "ft_budget": "2",
}
"""``--smoke``: every stage for a step or two (a few dozen images are enough), to check that
the experiment runs end to end; given flags still win."""
