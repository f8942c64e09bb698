"""Embeddings from images: the embedder and the ``embed`` run (the container and its files
are :mod:`dinokit.embeddings`, re-exported here).

``dinokit.embed`` is both this package and its main function: ``dinokit.embed("photos/",
model=...)`` calls :func:`embed`, while ``dinokit.embed.Embedder`` and
``from dinokit.embed import Embeddings`` reach the package's names.
"""

import sys
import types
from typing import Any

from ..embeddings import Embeddings, EmbeddingsFileError
from .config import EmbedConfig, EmbedSummary
from .embedder import EmbeddedBatch, Embedder
from .model_record import RecordedModelError
from .pipeline import embed, run_embed
from .pooling import POOLINGS

__all__ = [
    "POOLINGS",
    "EmbedConfig",
    "EmbedSummary",
    "EmbeddedBatch",
    "Embedder",
    "Embeddings",
    "EmbeddingsFileError",
    "RecordedModelError",
    "embed",
    "run_embed",
]


class _CallableModule(types.ModuleType):
    """Makes ``dinokit.embed(...)`` call :func:`embed` (a function of the same name would
    hide the package from ``import dinokit.embed``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Embeddings:
        return embed(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
