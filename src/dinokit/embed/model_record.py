"""The record of the model that made a set of embeddings, and its fingerprint.

The record is what :func:`dinokit.load` needs to rebuild the same backbone offline (a
registered name with its weights choice, or an absolute path to a run folder or weights
file). Random initialisation is seeded, so ``--weights none`` models rebuild identically.
The fingerprint is a hash of the architecture and every weight, so a file that changed since
(a run trained further, a different checkpoint under the same name) is detected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ..models import Backbone, load
from ..models.factory import NO_WEIGHTS

RANDOM_INIT_SEED = 0
"""Seed of the random initialisation of models built without weights."""


class RecordedModelError(RuntimeError):
    """The model recorded with a set of embeddings cannot be rebuilt as it was."""


def build_backbone(
    model: str | Path, *, weights: str | Path | None, branch: str, device: torch.device
) -> Backbone:
    """``dinokit.load`` with seeded random initialisation (eval mode, on ``device``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return load(model, weights=weights, branch=branch, device=device)


def model_record(
    model: str | Path | None, *, weights: str | Path | None, branch: str, backbone: Backbone
) -> dict[str, Any]:
    """What rebuilds ``backbone`` with :func:`rebuild_backbone`, JSON-serialisable.

    Paths are made absolute so the record works from any working directory; ``model=None``
    records a model that exists only in memory (it cannot be rebuilt).
    """
    spec = None if model is None else str(model)
    if spec is not None and Path(spec).expanduser().exists():
        spec = str(Path(spec).expanduser().absolute())
    if weights is not None and str(weights).lower() != NO_WEIGHTS:
        weights = str(Path(weights).expanduser().absolute())
    return {
        "model": spec,
        "weights": None if weights is None else str(weights),
        "branch": branch,
        "architecture": backbone.config.name,
        "source": backbone.source,
        "backbone": backbone.config.to_dict(),
    }


def rebuild_backbone(record: dict[str, Any], *, device: torch.device) -> Backbone:
    """The backbone a :func:`model_record` describes.

    Raises:
        RecordedModelError: The record is incomplete, or the model cannot be loaded (a moved
            run folder, official weights not in the local cache offline...).
    """
    spec = record.get("model")
    if not spec:
        raise RecordedModelError(
            "these embeddings record no loadable model (it was given in memory); "
            "embed with a model name, run folder or weights file to make them reusable"
        )
    branch = str(record.get("branch") or "teacher")
    try:
        return build_backbone(spec, weights=record.get("weights"), branch=branch, device=device)
    except (OSError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())
        raise RecordedModelError(
            f"cannot load the model these embeddings were made with ({spec}, {branch}): "
            f"{reason}; restore it, or re-embed with dinokit embed --model ... --overwrite"
        ) from None


def fingerprint(backbone: Backbone) -> str:
    """A short hash of the architecture and every weight of ``backbone`` (hex, 16 chars).

    It covers the positional-embedding rule where it is DINO's offset, which changes vectors
    at other grids than the table's: embeddings made before that rule (all resampled
    antialiased then) are recognised as made by another model.
    """
    digest = hashlib.sha256()
    digest.update(backbone.config.name.encode())
    if backbone.config.pos_embed_interp != "antialias":
        digest.update(f"pos_embed_interp:{backbone.config.pos_embed_interp}".encode())
    for name, tensor in sorted(backbone.vit.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        if data.dtype == torch.bfloat16:
            data = data.view(torch.int16)
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.reshape(-1).numpy())
    return digest.hexdigest()[:16]
