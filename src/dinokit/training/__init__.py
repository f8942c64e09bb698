"""DINO training runs: config, networks, loop, checkpoints, monitoring (``dinokit train``)."""

from .config import ResolvedConfig, TrainConfig
from .loop import NonFiniteLossError
from .run import train

__all__ = ["NonFiniteLossError", "ResolvedConfig", "TrainConfig", "train"]
