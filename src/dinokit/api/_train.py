"""``dinokit.train``: the Python face of ``dinokit train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..training import TrainConfig
from ..training import train as run_training


def train(data: str | Path | list[str | Path], *, out: str | Path, **options: Any) -> Path:
    """DINO-train (or fine-tune) a backbone on image folders; returns the run folder.

    The Python face of ``dinokit train``: ``options`` are :class:`TrainConfig` fields
    (``model``, ``weights``, ``epochs``, ``batch_size``, ``lr``, ``out_dim``...).

    Example:
        >>> dinokit.train("photos/", model="dino_vits16", out="runs/shop", epochs=20)
    """
    folders = [data] if isinstance(data, str | Path) else list(data)
    config = TrainConfig.from_dict(
        {**options, "data": [str(d) for d in folders], "out": str(out)}, source="train()"
    )
    return run_training(config)
