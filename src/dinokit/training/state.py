"""Everything a training run carries from step to step, and its checkpoint form.

A checkpoint holds the student and teacher (backbone and head), the loss centre, the
optimizer and scaler, the position (epoch, step), the RNG states and the resolved config,
so ``--resume`` continues exactly. It also names the backbone config so that
:func:`dinokit.load` can read a checkpoint as a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..dino import DINOLoss, Schedules
from ..models.export import FORMAT_VERSION
from ..models.weights.files import DINOKIT_METADATA_KEY
from .checkpoint import capture_rng_state, restore_rng_state
from .config import ResolvedConfig
from .model import MultiCropNetwork

#: The per-step schedules a checkpoint keeps.
SCHEDULED = ("lr", "weight_decay", "momentum")


@dataclass
class TrainState:
    """The networks, optimisation state and position of a run."""

    config: ResolvedConfig
    student: MultiCropNetwork
    student_ddp: nn.Module  # the DDP wrapper, or the student itself
    teacher: MultiCropNetwork
    loss: DINOLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedules: Schedules
    base_weights: str
    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # optimizer steps done in the current epoch
    global_step: int = 0
    spent_seconds: float = 0.0  # of a time budget, at the last checkpoint
    world_size: int = 1  # processes (the recorded recipe's total batch)

    @property
    def epoch_float(self) -> float:
        """Progress in epochs, fractional."""
        return self.epoch + self.step_in_epoch / self.schedules.steps_per_epoch

    def provenance(self, run: Path) -> dict[str, Any]:
        """What a backbone exported from this state records of its origin (run folder,
        base weights, epochs and steps so far, model)."""
        return {
            "run": str(run.resolve()),
            "base_weights": self.base_weights,
            "epochs": round(self.epoch_float, 3),
            "steps": self.global_step,
            "model": self.config.model,
        }

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint contents (tensors, numbers, strings, lists and dicts only)."""
        return {
            DINOKIT_METADATA_KEY: {
                "format_version": FORMAT_VERSION,
                "kind": "training-checkpoint",
                "backbone": self.student.backbone.config.to_dict(),
                "train_config": self.config.record(),
                "base_weights": self.base_weights,
                "config_sources": dict(self.config.sources),
                "world_size": self.world_size,
            },
            "student": _network_state(self.student),
            "teacher": _network_state(self.teacher),
            "loss": {"center": self.loss.center.detach().cpu()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "spent_seconds": self.spent_seconds,
            # The schedules as they were run: a time budget may have refitted them.
            "schedules": {
                name: torch.from_numpy(getattr(self.schedules, name).copy()) for name in SCHEDULED
            },
            "rng": capture_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (same architecture and config)."""
        for network, key in ((self.student, "student"), (self.teacher, "teacher")):
            network.backbone.vit.load_state_dict(state[key]["backbone"])
            network.head.load_state_dict(state[key]["head"])
        self.loss.center.copy_(state["loss"]["center"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.spent_seconds = float(state.get("spent_seconds", 0.0))
        saved = state.get("schedules")
        if saved and all(len(saved[name]) == len(self.schedules.lr) for name in SCHEDULED):
            arrays = {name: saved[name].double().numpy() for name in SCHEDULED}
            self.schedules = Schedules(**arrays, steps_per_epoch=self.schedules.steps_per_epoch)
        restore_rng_state(state["rng"])


def _network_state(network: MultiCropNetwork) -> dict[str, Any]:
    return {
        "backbone": {k: v.detach().cpu() for k, v in network.backbone.vit.state_dict().items()},
        "head": {k: v.detach().cpu() for k, v in network.head.state_dict().items()},
    }
