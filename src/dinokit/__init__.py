"""dinokit: fine-tune DINO-family Vision Transformers on your images and use their embeddings."""

from pathlib import Path
from typing import Any

from . import cluster, duplicates, embed, search
from .embeddings import Embeddings
from .evaluation import evaluate
from .models import (
    Backbone,
    BackboneConfig,
    Features,
    Preprocessing,
    create_backbone,
    export,
    get_config,
    list_backbones,
    load,
    save_backbone,
)
from .training import TrainConfig
from .viz.map import plot_map
from .viz.report import write_report

__version__ = "0.1.0"


def train(data: str | Path | list[str | Path], *, out: str | Path, **options: Any) -> Path:
    """DINO-train (or fine-tune) a backbone on image folders; returns the run folder.

    The Python face of ``dinokit train``: ``options`` are :class:`TrainConfig` fields
    (``model``, ``weights``, ``epochs``, ``batch_size``, ``lr``, ``out_dim``...).

    Example:
        >>> dinokit.train("photos/", model="dino_vits16", out="runs/shop", epochs=20)
    """
    from .training import train as run_training

    folders = [data] if isinstance(data, str | Path) else list(data)
    config = TrainConfig.from_dict(
        {**options, "data": [str(d) for d in folders], "out": str(out)}, source="train()"
    )
    return run_training(config)


__all__ = [
    "Backbone",
    "BackboneConfig",
    "Embeddings",
    "Features",
    "Preprocessing",
    "TrainConfig",
    "__version__",
    "cluster",
    "create_backbone",
    "duplicates",
    "embed",
    "evaluate",
    "export",
    "get_config",
    "list_backbones",
    "load",
    "plot_map",
    "save_backbone",
    "search",
    "train",
    "write_report",
]
