"""dinokit: fine-tune DINO-family Vision Transformers on your images and use their embeddings."""

from . import cluster, duplicates, embed, search
from ._version import __version__
from .api import evaluate, train
from .embeddings import Embeddings
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
