"""Evaluation of embeddings: DINO's weighted kNN classifier (facebookresearch/dino)."""

from .knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_accuracy, knn_predict

__all__ = ["DEFAULT_K", "DEFAULT_TEMPERATURE", "knn_accuracy", "knn_predict"]
