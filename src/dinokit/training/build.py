"""Building a run's networks from its config: backbone weights, head, centre, teacher.

Fine-tuning starts from pretrained weights; a DINO full checkpoint (official or dinokit)
also brings its projection head and loss centre, so training continues where it stopped
instead of re-learning a random head on top of good features.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..dino import DINOHead, make_teacher
from ..models import Backbone, BackboneConfig, build_vit, get_config
from ..models.factory import NO_WEIGHTS, fill_backbone, infer_config, run_folder_file
from ..models.weights import read_weights, resolve_official_weights
from ..models.weights.files import WeightsFile, is_hf_folder
from ..models.weights.hub import HF_PREFIX
from .config import TrainConfig, resolve_auto
from .model import MultiCropNetwork
from .recipe import Recipe, recipe_from_args

logger = logging.getLogger(__name__)

_G_KEYS = ("last_layer.weight_g", "last_layer.parametrizations.weight.original0")
_V_KEYS = ("last_layer.weight_v", "last_layer.parametrizations.weight.original1")


@dataclass
class Networks:
    """The student, its EMA teacher, and what the weights file brought."""

    student: MultiCropNetwork
    teacher: MultiCropNetwork
    center: Tensor | None
    config: TrainConfig  # with every auto value resolved
    base_weights: str
    sources: dict[str, str]  # where each auto value came from


def initial_weights(config: TrainConfig) -> tuple[BackboneConfig, WeightsFile | None]:
    """Architecture and starting weights named by ``config.model`` / ``config.weights``.

    ``config.model`` may also be a previous run folder, a weights file, a transformers model
    folder or ``hf:<org>/<name>`` (the architecture is then read from it).
    """
    model_path = Path(config.model).expanduser()
    if config.model.startswith(HF_PREFIX):
        weights_file = read_weights(config.model)
        return infer_config(weights_file), weights_file
    if model_path.exists():
        if model_path.is_dir() and not is_hf_folder(model_path):
            model_path = run_folder_file(model_path, with_head=True)
        weights_file = read_weights(model_path)
        return infer_config(weights_file), weights_file
    backbone_config = get_config(config.model)
    if isinstance(config.weights, str) and config.weights.lower() == NO_WEIGHTS:
        return backbone_config, None
    path = config.weights or (
        resolve_official_weights(backbone_config) if backbone_config.weights else None
    )
    return backbone_config, read_weights(path) if path else None


def _head_shape(head_state: dict[str, Tensor]) -> dict[str, int]:
    g_key = next((k for k in _G_KEYS if k in head_state), None)
    v_key = next((k for k in _V_KEYS if k in head_state), None)
    linear = sorted(
        int(m.group(1)) for k in head_state if (m := re.fullmatch(r"mlp\.(\d+)\.weight", k))
    )
    if v_key is None or g_key is None or not linear:
        raise ValueError(f"unrecognised DINO head keys: {sorted(head_state)[:8]}")
    out_dim, bottleneck = head_state[v_key].shape
    mlp_weights = [
        head_state[f"mlp.{i}.weight"] for i in linear if head_state[f"mlp.{i}.weight"].ndim == 2
    ]
    return {
        "out_dim": int(out_dim),
        "bottleneck_dim": int(bottleneck),
        "hidden_dim": int(mlp_weights[0].shape[0]) if len(mlp_weights) > 1 else 2048,
        "n_layers": len(mlp_weights),
        "use_bn": any(head_state[f"mlp.{i}.weight"].ndim == 1 for i in linear),
        # A weight-norm scale left at 1 everywhere means the head was trained with
        # norm_last_layer (g frozen); otherwise g was learned and stays trainable.
        "norm_last_layer": bool(head_state[g_key].eq(1).all()),
    }


def build_networks(
    config: TrainConfig, *, n_images: int | None = None, world_size: int = 1
) -> Networks:
    """Student (with stochastic depth) and teacher (exact copy, no drop path).

    Args:
        config: The requested config (*auto* values are resolved here; an official full
            checkpoint's recorded ``args`` fill those the user left unset).
        n_images: Training images, for the automatic ``out_dim`` (65536 when unknown).
        world_size: Processes, for the momentum rule (total batch).

    Returns:
        The networks, the config with every *auto* value resolved, and their sources.
    """
    backbone_config, weights_file = initial_weights(config)
    head_state = weights_file.head if weights_file is not None else {}
    shape = _head_shape(head_state) if head_state else None
    if weights_file is None and (config.weights or "").lower() != NO_WEIGHTS:
        config = dataclasses.replace(config, weights=NO_WEIGHTS)  # e.g. vit_test: no official file
    resolved, sources = resolve_auto(
        config,
        native_size=backbone_config.preprocessing.size,
        patch_size=backbone_config.patch_size,
        head=shape,
        n_images=n_images,
        world_size=world_size,
        recipe=_recorded_recipe(weights_file),
    )
    assert resolved.out_dim is not None and resolved.drop_path is not None
    assert resolved.use_bn_in_head is not None and resolved.norm_last_layer is not None
    backbone = Backbone(
        build_vit(backbone_config, drop_path_rate=resolved.drop_path), backbone_config
    )
    if weights_file is not None:
        fill_backbone(backbone, weights_file)
    head = DINOHead(
        backbone_config.embed_dim,
        resolved.out_dim,
        hidden_dim=shape["hidden_dim"] if shape else resolved.hidden_dim,
        bottleneck_dim=shape["bottleneck_dim"] if shape else resolved.bottleneck_dim,
        n_layers=shape["n_layers"] if shape else 3,
        use_bn=resolved.use_bn_in_head,
        norm_last_layer=resolved.norm_last_layer,
    )
    if head_state:
        head.load_state_dict(head_state)
        logger.info(
            "loaded the DINO head (%d prototypes) from %s",
            resolved.out_dim,
            weights_file.path if weights_file else "?",
        )
    if resolved.global_size != backbone_config.preprocessing.size:
        # The model learns at the global crop size: evaluate and export it at that size.
        backbone.config = backbone_config.with_preprocessing(size=resolved.global_size)
    student = MultiCropNetwork(backbone, head)
    teacher = make_teacher(student)
    assert isinstance(teacher, MultiCropNetwork)
    teacher.eval()
    # As in the reference (its teacher is never put in eval mode), a head with BatchNorm
    # normalises the teacher's outputs with the statistics of the batch it sees.
    for module in teacher.head.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.train()
    return Networks(
        student=student,
        teacher=teacher,
        center=weights_file.center if weights_file is not None else None,
        config=resolved,
        base_weights=str(weights_file.path) if weights_file is not None else "random init",
        sources=sources,
    )


def _recorded_recipe(weights_file: WeightsFile | None) -> Recipe:
    """The training recipe recorded in an official DINO full checkpoint (else empty)."""
    if weights_file is None or weights_file.layout != "dino-full-checkpoint":
        return Recipe()
    args = weights_file.metadata.get("args")
    return recipe_from_args(
        args if isinstance(args, dict) else None, epoch=weights_file.metadata.get("epoch")
    )
