"""Evaluation of embeddings: DINO's weighted kNN (facebookresearch/dino), a linear probe and
label-free quality scores. Pure metrics on vectors; :func:`dinokit.api.evaluate` embeds
folders and calls them."""

from .knn import DEFAULT_K, DEFAULT_TEMPERATURE, REFERENCE_KS, knn_accuracy, knn_predict
from .linear import LinearProbeResult, linear_probe
from .quality import QualityScore, effective_rank, quality_score, uniformity
from .scores import label_scores

__all__ = [
    "DEFAULT_K",
    "DEFAULT_TEMPERATURE",
    "REFERENCE_KS",
    "LinearProbeResult",
    "QualityScore",
    "effective_rank",
    "knn_accuracy",
    "knn_predict",
    "label_scores",
    "linear_probe",
    "quality_score",
    "uniformity",
]
