"""The one door to a backbone: :func:`create_backbone` by name, :func:`load` by name or file."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .backbone import Backbone, build_vit
from .config import BackboneConfig
from .registry import TIMM_PREFIX, get_config, list_backbones
from .weights import read_weights, resolve_official_weights
from .weights.convert import load_backbone_state, to_timm_layout
from .weights.files import WeightsFile, is_hf_folder
from .weights.hub import HF_PREFIX

logger = logging.getLogger(__name__)

NO_WEIGHTS = "none"


def create_backbone(
    name: str,
    *,
    weights: str | Path | None = None,
    branch: str = "teacher",
    drop_path_rate: float = 0.0,
) -> Backbone:
    """Build a named backbone and fill its weights.

    Args:
        name: A registered name (see :func:`list_backbones`) or ``timm:<timm ViT name>``.
        weights: ``None`` for the official pretrained weights (cache first, then download),
            ``"none"`` for random initialisation, a path to a weights file of any layout
            :func:`~dinokit.models.weights.read_weights` reads, a transformers model folder,
            or ``hf:<org>/<name>`` (a Hugging Face repository, cache first).
        branch: ``teacher`` or ``student`` for files that hold both.
        drop_path_rate: Stochastic depth rate (for training students).

    Returns:
        The backbone in training mode (``model.eval()`` before inference).
    """
    config = get_config(name)
    backbone = Backbone(build_vit(config, drop_path_rate=drop_path_rate), config)
    _fill_named(backbone, weights, branch=branch)
    return backbone


def _fill_named(
    backbone: Backbone, weights: str | Path | None, *, branch: str
) -> WeightsFile | None:
    """Fill a backbone built by name as ``weights`` says; returns the file read, if any."""
    config = backbone.config
    if isinstance(weights, str) and weights.lower() == NO_WEIGHTS:
        return None
    if weights is None:
        if config.weights is None:
            logger.info("%s has no official weights: random initialisation", config.name)
            return None
        weights = resolve_official_weights(config)
    weights_file = read_weights(weights, branch=branch)
    fill_backbone(backbone, weights_file)
    return weights_file


def fill_backbone(backbone: Backbone, weights_file: WeightsFile) -> None:
    """Load the backbone part of a weights file into ``backbone`` (strict, checked)."""
    load_backbone_state(backbone.vit, weights_file.backbone, source=str(weights_file.path))
    backbone.source = str(weights_file.path)
    logger.info("loaded %s weights from %s", weights_file.layout, weights_file.path)


def infer_config(weights_file: WeightsFile) -> BackboneConfig:
    """Find the registered backbone whose architecture matches a state dict.

    Raises:
        ValueError: no registered backbone has this shape; the caller should name one.
    """
    meta = weights_file.metadata.get("backbone")
    if isinstance(meta, dict):
        return BackboneConfig.from_dict(meta)
    hf = weights_file.metadata.get("transformers")
    if isinstance(hf, dict):
        from .hf_format import backbone_config_from_hf

        return backbone_config_from_hf(
            hf["config"], preprocessor=hf.get("preprocessor"), label=str(hf["label"])
        )
    by_name = _config_by_file_name(weights_file.path.name)
    if by_name is not None:
        return by_name
    sd = to_timm_layout(weights_file.backbone)
    try:
        dim = int(sd["cls_token"].shape[-1])
        patch = int(sd["patch_embed.proj.weight"].shape[-1])
    except KeyError:
        raise ValueError(
            f"{weights_file.path}: not a ViT state dict dinokit recognises "
            "(no cls_token / patch_embed.proj.weight)"
        ) from None
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    regs = int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0
    layer_scale = "blocks.0.ls1.gamma" in sd or "blocks.0.gamma_1" in sd
    # DINOv3 (timm's Eva keys): no learned positions; S+/L+/H+ differ from S/L/H by SwiGLU.
    rope = "pos_embed" not in sd and "blocks.0.gamma_1" in sd
    swiglu = "blocks.0.mlp.fc1_g.weight" in sd
    for name in list_backbones():
        cfg = get_config(name)
        shape = (cfg.embed_dim, cfg.patch_size, cfg.depth, cfg.reg_tokens)
        if shape != (dim, patch, depth, regs) or (cfg.layer_scale is not None) != layer_scale:
            continue
        if (cfg.family == "dinov3") != rope or (rope and (cfg.mlp == "swiglu") != swiglu):
            continue
        if cfg.name == "dinov3_vitl16" and "local_cls_norm.weight" in weights_file.backbone:
            # dinov3/hub/backbones.py unties the local-crop CLS norm of ViT-L/16 for the
            # SAT-493M weights only (the 7B has it for both), so the file tells them apart.
            return get_config("dinov3_vitl16_sat")
        if cfg.family == "dinov3" and cfg.name.endswith("7b16"):
            logger.info(
                "%s: taken as %s (LVD-1689M); pass --model %s_sat for the SAT-493M weights",
                weights_file.path,
                cfg.name,
                cfg.name,
            )
        return cfg  # the LVD-1689M model before its SAT-493M twin: same tensors
    raise ValueError(
        f"{weights_file.path}: no registered backbone is a ViT with width {dim}, patch {patch}, "
        f"{depth} blocks and {regs} registers; pass --model NAME (or timm:<name>) with it"
    )


def _config_by_file_name(file_name: str) -> BackboneConfig | None:
    """The registered backbone whose official file has this name (SAT-493M vs LVD-1689M)."""
    for name in list_backbones():
        cfg = get_config(name)
        if cfg.weights is not None and cfg.weights.file_name == file_name:
            return cfg
    return None


def load(
    model: str | Path,
    *,
    weights: str | Path | None = None,
    branch: str = "teacher",
    device: str | torch.device | None = None,
) -> Backbone:
    """A ready backbone (eval mode) from a name, a run folder, or a weights file.

    Args:
        model: A registered name or ``timm:<name>``; a training run folder (its
            ``<branch>.safetensors``, else its last checkpoint); an exported dinokit
            ``.safetensors``; any weights file of a known layout (the architecture is
            recognised from the tensors); a transformers model folder, or its repository id
            as ``hf:facebook/dinov2-small`` (Hugging Face cache first, then a download).
        weights: With a name: as in :func:`create_backbone`.
        branch: ``teacher`` (default, recommended by DINO's authors) or ``student``.
        device: Where to put the model (default CPU).

    Raises:
        FileNotFoundError: ``model`` is neither a known name nor an existing path.
    """
    backbone = open_model(model, weights=weights, branch=branch).backbone
    backbone.eval()
    if device is not None:
        backbone.to(device)
    return backbone


@dataclass
class OpenedModel:
    """A backbone and the weights file it was filled from.

    Attributes:
        backbone: The model (training mode, on the CPU).
        weights_file: The file read (its layout, branch and metadata), or None for a
            registered name built without weights.
    """

    backbone: Backbone
    weights_file: WeightsFile | None


def open_model(
    model: str | Path, *, weights: str | Path | None = None, branch: str = "teacher"
) -> OpenedModel:
    """What :func:`load` does, keeping the weights file (for exports that carry provenance).

    Args:
        model: As in :func:`load`.
        weights: As in :func:`load`; only used with a name.
        branch: As in :func:`load`.

    Raises:
        FileNotFoundError: ``model`` is neither a known name nor an existing path.
    """
    spec = str(model)
    path = Path(spec).expanduser()
    from_hub = spec.startswith(HF_PREFIX)
    if path.exists() or from_hub:
        if weights is not None:
            logger.warning(
                "%s is a file, folder or repository: weights=%s is not used", spec, weights
            )
        if path.is_dir() and not is_hf_folder(path):
            path = run_folder_file(path, branch=branch)
        weights_file = read_weights(spec if from_hub else path, branch=branch)
        config = infer_config(weights_file)
        backbone = Backbone(build_vit(config), config)
        fill_backbone(backbone, weights_file)
        return OpenedModel(backbone, weights_file)
    if spec.startswith(TIMM_PREFIX) or spec in list_backbones():
        config = get_config(spec)
        backbone = Backbone(build_vit(config), config)
        return OpenedModel(backbone, _fill_named(backbone, weights, branch=branch))
    valid = ", ".join(list_backbones())
    raise FileNotFoundError(
        f"{spec}: no such file or folder, and not a backbone name (valid names: {valid}, "
        "timm:<timm ViT name>, hf:<Hugging Face repository>)"
    )


def run_folder_file(folder: Path, *, branch: str = "teacher", with_head: bool = False) -> Path:
    """The weights file of a training run folder.

    Args:
        folder: A ``dinokit train`` output folder.
        branch: ``teacher`` or ``student``.
        with_head: Prefer ``checkpoints/last.pt`` (backbone, DINO head and loss centre) over
            the exported ``<branch>.safetensors`` (backbone only).

    Raises:
        FileNotFoundError: the folder holds neither file.
    """
    candidates = [folder / f"{branch}.safetensors", folder / "checkpoints" / "last.pt"]
    if with_head:
        candidates.reverse()
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(
            f"{folder}: a folder without {branch}.safetensors or checkpoints/last.pt; "
            "is it a dinokit run folder?"
        )
    return found
