"""DINO training runs: config, networks, loop, checkpoints, monitoring (``dinokit train``)."""

from .config import TrainConfig
from .loop import NonFiniteLossError
from .run import train

__all__ = ["NonFiniteLossError", "TrainConfig", "train"]
