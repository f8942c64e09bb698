"""Backbones: the registry, building by name, weights of every official layout, export."""

from .backbone import RANDOM_INIT, Backbone, Features, build_vit, random_backbone
from .config import BackboneConfig, Preprocessing, WeightsSource
from .export import export, save_backbone
from .factory import create_backbone, load
from .registry import get_config, list_backbones

__all__ = [
    "RANDOM_INIT",
    "Backbone",
    "BackboneConfig",
    "Features",
    "Preprocessing",
    "WeightsSource",
    "build_vit",
    "create_backbone",
    "export",
    "get_config",
    "list_backbones",
    "load",
    "random_backbone",
    "save_backbone",
]
