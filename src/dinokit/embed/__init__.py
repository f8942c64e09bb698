"""Embeddings: extracting them from images and the files that hold them."""

from .embeddings import Embeddings, EmbeddingsFileError

__all__ = ["Embeddings", "EmbeddingsFileError"]
