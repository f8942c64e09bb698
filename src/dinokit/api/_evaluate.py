"""Side-by-side evaluation of models and embedding recipes on labelled folders.

Each (model, preprocessing, branch) combination embeds the training and validation folders
with :func:`dinokit.embed.embed`, then reports DINO's weighted kNN top-1 for each k
(:func:`~dinokit.evaluation.knn.knn_accuracy`, T = 0.07, cosine), optionally a linear probe
(:func:`~dinokit.evaluation.linear.linear_probe`), and the label-free scores of the training
embeddings (:func:`~dinokit.evaluation.quality.quality_score`). Embeddings files can be given
instead of folders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..embed import embed
from ..embeddings import Embeddings
from ..evaluation import REFERENCE_KS, label_scores, quality_score

logger = logging.getLogger(__name__)


@dataclass
class EvaluationRow:
    """The scores of one embedding recipe.

    Attributes:
        model: The model as given (or the one recorded in an embeddings file).
        preprocess: Preprocessing mode used.
        branch: ``teacher`` or ``student``.
        feature: Embedding feature (``cls``, ``mean``...).
        n_train: Labelled training images used.
        n_val: Labelled validation images used.
        knn: ``{k: top-1 accuracy}`` (fractions); empty without labelled folders.
        linear: Linear-probe top-1 accuracy, or ``None`` when not asked for.
        quality: Label-free scores of the training embeddings (effective rank, uniformity).
    """

    model: str
    preprocess: str | None
    branch: str | None
    feature: str | None
    n_train: int
    n_val: int
    knn: dict[int, float] = field(default_factory=dict)
    linear: float | None = None
    quality: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (k keys as strings)."""
        out = asdict(self)
        out["knn"] = {str(k): v for k, v in self.knn.items()}
        return out


def evaluate(
    models: str | Path | Sequence[str | Path] = (),
    *,
    train: str | Path | None = None,
    val: str | Path | None = None,
    train_embeddings: str | Path | Embeddings | None = None,
    val_embeddings: str | Path | Embeddings | None = None,
    weights: str | Path | None = None,
    preprocess: Sequence[str | None] = (None,),
    branch: Sequence[str] = ("teacher",),
    feature: str = "cls",
    k: Sequence[int] = REFERENCE_KS,
    linear: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
    precision: str = "auto",
    device: str = "auto",
) -> list[EvaluationRow]:
    """kNN (and linear-probe) accuracy and label-free scores, one row per recipe.

    Args:
        models: Models to compare (names, run folders, weights files); one row per model,
            preprocessing and branch.
        train: Labelled folder (``class/image``) of reference images; unlabelled folders get
            the label-free score only.
        val: Labelled folder of images to classify.
        train_embeddings: An embeddings file (or object) to score as well (one more row).
        val_embeddings: Its validation counterpart.
        weights: Weights for registered model names (``"none"``: random initialisation).
        preprocess: Preprocessing modes to compare (``None``: each model's own).
        branch: ``teacher`` and/or ``student``.
        feature: Embedding feature.
        k: kNN neighbour counts.
        linear: Also fit a linear probe.
        batch_size: Images per forward pass.
        workers: Loader processes (default: the embedder's).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: ``auto``, ``cpu``, ``cuda``...

    Returns:
        One :class:`EvaluationRow` per recipe, in the order given.

    Example:
        >>> rows = dinokit.evaluate(["dino_vits16", "runs/shop"], train="data/train",
        ...                         val="data/val")
        >>> [(r.model, r.knn[20]) for r in rows]
    """
    model_list = [models] if isinstance(models, str | Path) else list(models)
    if not model_list and train_embeddings is None:
        raise ValueError("nothing to evaluate: give --model (with --train) or --train-embeddings")
    if model_list and train is None:
        raise ValueError("--model needs --train (a labelled folder) to embed")
    options = dict(
        feature=feature, batch_size=batch_size, workers=workers, precision=precision, device=device
    )
    rows = [
        _embed_and_score(model, weights, mode, side, train, val, options, k=k, linear=linear)
        for model in model_list
        for mode in preprocess
        for side in branch
    ]
    if train_embeddings is not None:
        train_emb = _load(train_embeddings)
        val_emb = _load(val_embeddings) if val_embeddings is not None else None
        rows.append(
            _row(_recorded_model(train_emb, train_embeddings), train_emb, val_emb, k, linear)
        )
    return rows


def _embed_and_score(
    model: str | Path,
    weights: str | Path | None,
    mode: str | None,
    side: str,
    train: str | Path | None,
    val: str | Path | None,
    options: dict[str, Any],
    *,
    k: Sequence[int],
    linear: bool,
) -> EvaluationRow:
    """Embed the folders with one recipe and score them."""
    assert train is not None  # checked by evaluate()
    named = not Path(model).expanduser().exists()
    recipe = dict(
        options, model=model, weights=weights if named else None, branch=side, preprocess=mode
    )
    logger.info("embedding %s with %s (%s, %s)", train, model, mode or "own", side)
    train_emb = embed(train, **recipe)
    val_emb = embed(val, **recipe) if val is not None else None
    return _row(str(model), train_emb, val_emb, k, linear)


def _labelled(emb: Embeddings, what: str) -> Embeddings:
    rows = [i for i, label in enumerate(emb.labels) if label is not None]
    if len(rows) < len(emb):
        logger.warning(
            "%s: %d images outside class folders are left out", what, len(emb) - len(rows)
        )
    return emb.subset(rows)


def _load(source: str | Path | Embeddings) -> Embeddings:
    return source if isinstance(source, Embeddings) else Embeddings.load(source)


def _recorded_model(emb: Embeddings, source: str | Path | Embeddings) -> str:
    """The model recorded in an embeddings file, else the file's name."""
    record = emb.metadata.get("model") or {}
    name = str(record.get("model") or source) if isinstance(record, dict) else ""
    return name or str(source)


def _row(
    model: str, train: Embeddings, val: Embeddings | None, k: Sequence[int], linear: bool
) -> EvaluationRow:
    """The kNN, linear-probe and label-free scores of one pair of embedding sets."""
    if val is not None and val.dim != train.dim:
        raise ValueError(
            f"train embeddings have {train.dim} dimensions and val {val.dim}: embed both "
            "with the same model and feature"
        )
    meta = train.metadata
    row = EvaluationRow(
        model=model,
        preprocess=meta.get("preprocess"),
        branch=meta.get("branch"),
        feature=meta.get("feature"),
        n_train=len(train),
        n_val=0 if val is None else len(val),
        quality=quality_score(train.vectors).to_dict() if len(train) >= 2 else {},
    )
    if val is None or not train.labelled or not val.labelled:
        if val is not None:
            logger.warning("kNN and linear probe need labelled folders (class/image): skipped")
        return row
    train, val = _labelled(train, "train"), _labelled(val, "val")
    row.n_train, row.n_val = len(train), len(val)
    row.knn, row.linear = label_scores(
        train.vectors,
        [label for label in train.labels if label is not None],
        val.vectors,
        [label for label in val.labels if label is not None],
        k=k,
        linear=linear,
    )
    return row
