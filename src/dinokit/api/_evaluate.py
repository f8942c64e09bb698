"""Side-by-side evaluation of models and embedding recipes on labelled folders.

Each (model, preprocessing, branch) combination embeds the training and validation folders
with :func:`dinokit.embed.embed`, then reports DINO's weighted kNN top-1 for each k
(:func:`~dinokit.evaluation.knn.knn_accuracy`, T = 0.07, cosine), optionally a linear probe
(:func:`~dinokit.evaluation.linear.linear_probe`), and the label-free scores of the training
embeddings (:func:`~dinokit.evaluation.quality.quality_score`). Embeddings files can be given
instead of folders.

With labelled ``train`` and ``val`` folders, one more row scores the raw-pixel baseline: every
image centre-cropped (shorter side) and scaled to 32 x 32, its 3,072 pixel values centred by
the training mean and L2-normalised (:func:`~dinokit.evaluation.pixels.raw_pixel_vectors`).
32 px is the classic "tiny images" size: cheap to decode and to search for any dataset, and
still the floor a learned embedding has to beat (about 40 % kNN top-1 on CIFAR-10). Before it,
each architecture whose weights were trained gets a row with its seeded random initialisation
(``--weights none``): what training added is the gap between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..data.sources import list_images
from ..data.tiny import tiny_images
from ..embed import embed
from ..embed.model_record import RANDOM_INIT_SEED
from ..embeddings import Embeddings
from ..evaluation import (
    BASELINE_SIZE,
    REFERENCE_KS,
    baseline_vectors,
    label_scores,
    quality_score,
)
from ..models import RANDOM_INIT, Backbone, BackboneConfig, random_backbone

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
    baselines: bool = True,
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
        baselines: With labelled ``train`` and ``val`` folders, add the baseline rows: the
            random initialisation of each trained model's architecture (model ``random init
            (<name>)``, the first preprocessing mode, teacher), then the raw pixels (model
            ``raw pixels (32 px)``).

    Returns:
        One :class:`EvaluationRow` per recipe, in the order given, then the baseline rows.

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
    scored = [
        _embed_and_score(model, weights, mode, side, train, val, options, k=k, linear=linear)
        for model in model_list
        for mode in preprocess
        for side in branch
    ]
    rows = [row for row, _ in scored]
    if train_embeddings is not None:
        train_emb = _load(train_embeddings)
        val_emb = _load(val_embeddings) if val_embeddings is not None else None
        rows.append(
            _row(_recorded_model(train_emb, train_embeddings), train_emb, val_emb, k, linear)
        )
    if baselines and train is not None and val is not None:
        for config in _pretrained_architectures(record for _, record in scored):
            rows.append(_random_init_row(config, preprocess[0], train, val, options, k, linear))
        baseline = raw_pixel_row(train, val, k=k, linear=linear, workers=workers)
        if baseline is not None:
            rows.append(baseline)
    return rows


def raw_pixel_row(
    train: str | Path,
    val: str | Path,
    *,
    k: Sequence[int] = REFERENCE_KS,
    linear: bool = False,
    size: int = BASELINE_SIZE,
    workers: int | None = None,
) -> EvaluationRow | None:
    """The raw-pixel baseline's scores: kNN (and linear probe) on centred, unit pixel vectors.

    Args:
        train: Labelled folder of reference images; its mean image is the centre.
        val: Labelled folder of images to classify.
        k: kNN neighbour counts.
        linear: Also fit a linear probe.
        size: Side of the square each image is centre-cropped and scaled to.
        workers: Decoding threads (default: one fewer than the usable CPUs, at most 8).

    Returns:
        The row (model ``raw pixels (<size> px)``), or ``None`` when either folder has no
        labelled readable image.
    """
    train_images, train_labels = _labelled_tiny_images(train, size, workers)
    val_images, val_labels = _labelled_tiny_images(val, size, workers)
    if not train_labels or not val_labels:
        logger.info("raw-pixel baseline skipped: it needs labelled train and val folders")
        return None
    train_x, val_x = baseline_vectors(train_images, val_images)
    row = EvaluationRow(
        model=f"raw pixels ({size} px)",
        preprocess="center-crop",
        branch=None,
        feature="pixels",
        n_train=len(train_labels),
        n_val=len(val_labels),
        quality=quality_score(train_x).to_dict() if len(train_x) >= 2 else {},
    )
    row.knn, row.linear = label_scores(train_x, train_labels, val_x, val_labels, k=k, linear=linear)
    return row


def _pretrained_architectures(records: Iterable[dict[str, Any]]) -> list[BackboneConfig]:
    """The architectures, in order and once each, of the models that carry trained weights
    (a model built with random weights is its own random-initialisation row)."""
    configs: list[BackboneConfig] = []
    for record in records:
        if record.get("source") == RANDOM_INIT or not isinstance(record.get("backbone"), dict):
            continue
        config = BackboneConfig.from_dict(record["backbone"])
        if config not in configs:
            configs.append(config)
    return configs


def _random_init_row(
    config: BackboneConfig,
    mode: str | None,
    train: str | Path,
    val: str | Path,
    options: dict[str, Any],
    k: Sequence[int],
    linear: bool,
) -> EvaluationRow:
    """The scores of ``config``'s architecture with random weights (seeded as ``--weights
    none``), as row ``random init (<architecture>)``."""
    backbone = random_backbone(config, seed=RANDOM_INIT_SEED)
    row, _ = _embed_and_score(
        backbone, None, mode, "teacher", train, val, options, k=k, linear=linear
    )
    row.model = f"{RANDOM_INIT} ({config.name})"
    return row


def _labelled_tiny_images(
    folder: str | Path, size: int, workers: int | None
) -> tuple[NDArray[np.uint8], list[str]]:
    """The labelled images of ``folder`` as (N, size, size, 3) uint8, and their N labels
    (images outside class folders and unreadable ones are left out)."""
    labelled = [r for r in list_images(folder) if r.label is not None]
    images, kept = tiny_images(labelled, size, workers=workers)
    return images, [r.label for r in kept if r.label is not None]


def _embed_and_score(
    model: str | Path | Backbone,
    weights: str | Path | None,
    mode: str | None,
    side: str,
    train: str | Path | None,
    val: str | Path | None,
    options: dict[str, Any],
    *,
    k: Sequence[int],
    linear: bool,
) -> tuple[EvaluationRow, dict[str, Any]]:
    """Embed the folders with one recipe and score them; the row and the model's record
    (architecture, where its weights came from)."""
    assert train is not None  # checked by evaluate()
    named = isinstance(model, str | Path) and not Path(model).expanduser().exists()
    recipe = dict(
        options, model=model, weights=weights if named else None, branch=side, preprocess=mode
    )
    name = model.config.name if isinstance(model, Backbone) else model
    logger.info("embedding %s with %s (%s, %s)", train, name, mode or "own", side)
    train_emb = embed(train, **recipe)
    val_emb = embed(val, **recipe) if val is not None else None
    record = train_emb.metadata.get("model")
    return _row(str(model), train_emb, val_emb, k, linear), (
        record if isinstance(record, dict) else {}
    )


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
