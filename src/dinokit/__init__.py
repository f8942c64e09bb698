"""dinokit: fine-tune DINO-family Vision Transformers on your images and use their embeddings."""

from .models import (
    Backbone,
    BackboneConfig,
    Features,
    Preprocessing,
    create_backbone,
    get_config,
    list_backbones,
    load,
    save_backbone,
)

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "BackboneConfig",
    "Features",
    "Preprocessing",
    "__version__",
    "create_backbone",
    "get_config",
    "list_backbones",
    "load",
    "save_backbone",
]
