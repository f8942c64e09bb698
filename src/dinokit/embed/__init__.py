"""Embeddings: extracting them from images and the files that hold them."""

from .embedder import EmbeddedBatch, Embedder
from .embeddings import Embeddings, EmbeddingsFileError
from .model_record import RecordedModelError
from .pooling import FEATURES

__all__ = [
    "FEATURES",
    "EmbeddedBatch",
    "Embedder",
    "Embeddings",
    "EmbeddingsFileError",
    "RecordedModelError",
]
