"""Evaluation of embeddings: DINO's weighted kNN (facebookresearch/dino), a linear probe and
label-free quality scores."""

from .evaluate import REFERENCE_KS, EvaluationRow, evaluate, score_embeddings
from .knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_accuracy, knn_predict
from .linear import LinearProbeResult, linear_probe
from .quality import QualityScore, effective_rank, quality_score, uniformity

__all__ = [
    "DEFAULT_K",
    "DEFAULT_TEMPERATURE",
    "REFERENCE_KS",
    "EvaluationRow",
    "LinearProbeResult",
    "QualityScore",
    "effective_rank",
    "evaluate",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "quality_score",
    "score_embeddings",
    "uniformity",
]
