"""Evaluation of embeddings: DINO's weighted kNN (facebookresearch/dino), a linear probe,
label-free quality scores and the raw-pixel baseline's vectors. Pure metrics on arrays;
:func:`dinokit.api.evaluate` embeds (or decodes) folders and calls them."""

from .knn import DEFAULT_K, DEFAULT_TEMPERATURE, REFERENCE_KS, knn_accuracy, knn_predict
from .linear import LinearProbeResult, linear_probe
from .pixels import (
    BASELINE_SIZE,
    baseline_vectors,
    flatten_pixels,
    pixel_mean,
    raw_pixel_vectors,
)
from .quality import QualityScore, effective_rank, quality_score, uniformity
from .scores import label_scores

__all__ = [
    "BASELINE_SIZE",
    "DEFAULT_K",
    "DEFAULT_TEMPERATURE",
    "REFERENCE_KS",
    "LinearProbeResult",
    "QualityScore",
    "baseline_vectors",
    "effective_rank",
    "flatten_pixels",
    "knn_accuracy",
    "knn_predict",
    "label_scores",
    "linear_probe",
    "pixel_mean",
    "quality_score",
    "raw_pixel_vectors",
    "uniformity",
]
