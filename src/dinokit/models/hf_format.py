"""Hugging Face ``transformers`` models in and out: configs, the registered match, the export.

Reading: a ``config.json`` of a ``Dinov2Model``, ``Dinov2WithRegistersModel`` or ``ViTModel``
picks the registered backbone with the same width, depth, heads, patch size, positional grid,
registers and MLP (``facebook/dinov2-small`` -> ``dinov2_vits14``, ``facebook/dino-vits16`` ->
``dino_vits16``); any other size is built from the config itself. A folder that dinokit wrote
carries its backbone config in ``config.json`` (key ``dinokit``) and comes back as it left.

Writing (:func:`save_transformers`): DINO v1 -> ``ViTModel``, DINOv2 -> ``Dinov2Model``, with
registers -> ``Dinov2WithRegistersModel``, as ``config.json`` + ``model.safetensors`` +
``preprocessor_config.json`` (a ``BitImageProcessor``), so ``AutoModel.from_pretrained(DIR)``
and ``AutoImageProcessor.from_pretrained(DIR)`` load it offline.

Positional embeddings at other input sizes: transformers' ``Dinov2WithRegistersModel``
interpolates bicubically with antialiasing, as dinokit (timm) does, so both agree at every size;
``Dinov2Model`` and ``ViTModel`` (``interpolate_pos_encoding=True``) interpolate without
antialiasing, so away from the native size their tokens differ slightly from dinokit's (the
official DINO / DINOv2 code differs from both in its own way).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._files import default_mode
from .backbone import Backbone
from .config import BackboneConfig, Preprocessing
from .dinov3 import swiglu_hidden
from .registry import get_config, list_backbones
from .weights.hf_dinov3 import MODEL_TYPE as DINOV3_MODEL_TYPE
from .weights.hf_dinov3 import check_hf_dinov3_config
from .weights.hf_layout import CONFIG_FILE, MODEL_TYPES, PREPROCESSOR_FILE, timm_to_hf

logger = logging.getLogger(__name__)

DINOKIT_CONFIG_KEY = "dinokit"
"""Key of ``config.json`` holding dinokit's backbone config (transformers keeps extra keys)."""
# PIL resampling codes used by transformers' image processors.
_RESAMPLE = {"bilinear": 2, "bicubic": 3}
_HF_LAYER_NORM_EPS = 1e-6  # timm's and the official DINO / DINOv2 LayerNorm epsilon


def _side(value: Any, what: str, source: str) -> int:
    """An int from ``224`` or ``[224, 224]`` (square only)."""
    if isinstance(value, list | tuple):
        if len(set(value)) != 1:
            raise ValueError(f"{source}: non-square {what} {value} is not supported")
        value = value[0]
    return int(value)


def _check_supported(config: dict[str, Any], source: str) -> None:
    """Refuse configs whose blocks differ from dinokit's ViT (no silent approximation)."""
    problems = []
    if config.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (dinokit: exact gelu)")
    if not config.get("qkv_bias", True):
        problems.append("qkv_bias false")
    if int(config.get("num_channels", 3)) != 3:
        problems.append(f"{config.get('num_channels')} input channels")
    if problems:
        raise ValueError(f"{source}: no dinokit backbone has {', '.join(problems)}")
    eps = float(config.get("layer_norm_eps", _HF_LAYER_NORM_EPS))
    if eps != _HF_LAYER_NORM_EPS:
        # transformers' DINO v1 configs keep ViTConfig's 1e-12; the official model uses 1e-6.
        logger.info(
            "%s: layer_norm_eps %g; dinokit keeps the official DINO / DINOv2 %g "
            "(tokens differ from transformers' by about 1e-4)",
            source,
            eps,
            _HF_LAYER_NORM_EPS,
        )


def backbone_config_from_hf(
    config: dict[str, Any], *, preprocessor: dict[str, Any] | None, label: str
) -> BackboneConfig:
    """The :class:`BackboneConfig` of a transformers ``config.json``.

    Args:
        config: The parsed ``config.json`` (``model_type`` dinov2, dinov2_with_registers or vit).
        preprocessor: The parsed ``preprocessor_config.json``, if any (used for sizes with no
            registered backbone).
        label: Where it comes from (``hf:facebook/dinov2-small`` or a folder), for names and
            messages.

    Raises:
        ValueError: an unsupported model type or block variant.
    """
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{label}: model_type {model_type!r} is not one of {list(MODEL_TYPES)}")
    if model_type == DINOV3_MODEL_TYPE:
        return _dinov3_config_from_hf(config, label)
    _check_supported(config, label)
    dim = int(config["hidden_size"])
    shape: dict[str, Any] = {
        "embed_dim": dim,
        "depth": int(config["num_hidden_layers"]),
        "num_heads": int(config["num_attention_heads"]),
        "patch_size": _side(config.get("patch_size", 16), "patch size", label),
        "pos_embed_size": _side(config.get("image_size", 224), "image size", label),
    }
    if model_type == "vit":
        shape.update(mlp_ratio=int(config.get("intermediate_size", 4 * dim)) / dim, mlp="mlp")
        layer_scale, regs = None, 0
    else:
        shape.update(
            mlp_ratio=float(config.get("mlp_ratio", 4.0)),
            mlp="swiglu" if config.get("use_swiglu_ffn") else "mlp",
        )
        layer_scale = float(config.get("layerscale_value", 1.0))
        regs = int(config.get("num_register_tokens", 0)) if "registers" in model_type else 0
    shape["reg_tokens"] = regs
    saved = config.get(DINOKIT_CONFIG_KEY)
    if isinstance(saved, dict) and isinstance(saved.get("backbone"), dict):
        own = BackboneConfig.from_dict(saved["backbone"])
        if all(getattr(own, k) == v for k, v in shape.items()):
            return own
        logger.warning("%s: its dinokit config does not match config.json: ignored", label)
    for name in list_backbones():
        registered = get_config(name)
        same = all(getattr(registered, k) == v for k, v in shape.items())
        if same and (registered.layer_scale is None) == (layer_scale is None):
            logger.info("%s is %s", label, name)
            return registered
    logger.info("%s: no registered backbone has this shape; built from its config.json", label)
    default = Preprocessing(size=min(224, shape["pos_embed_size"]))
    return BackboneConfig(
        name=f"hf:{label}" if not label.startswith("hf:") else label,
        family="dino" if model_type == "vit" else "dinov2",
        layer_scale=layer_scale,
        preprocessing=preprocessing_from_hf(preprocessor, default),
        description=f"transformers {MODEL_TYPES[model_type]} from {label}",
        **shape,
    )


def _dinov3_config_from_hf(config: dict[str, Any], label: str) -> BackboneConfig:
    """The registered DINOv3 backbone a ``DINOv3ViTModel`` config describes.

    Raises:
        ValueError: a variant or size no registered DINOv3 backbone has.
    """
    check_hf_dinov3_config(config, label)
    gated = bool(config.get("use_gated_mlp", False))
    shape = (
        int(config["hidden_size"]),
        int(config["num_hidden_layers"]),
        int(config["num_attention_heads"]),
        _side(config.get("patch_size", 16), "patch size", label),
        int(config.get("num_register_tokens", 0)),
        gated,
        int(config["intermediate_size"]),
    )
    for name in list_backbones():
        cfg = get_config(name)
        if cfg.family != "dinov3":
            continue
        swiglu = cfg.mlp == "swiglu"
        hidden = swiglu_hidden(cfg) if swiglu else int(cfg.embed_dim * cfg.mlp_ratio)
        registered = (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size, cfg.reg_tokens)
        if (*registered, swiglu, hidden) == shape:
            logger.info("%s is %s", label, name)  # LVD-1689M before its SAT-493M twin
            return cfg
    raise ValueError(
        f"{label}: no registered DINOv3 backbone has width {shape[0]}, {shape[1]} layers, "
        f"{shape[2]} heads, patch {shape[3]}, {shape[4]} registers and MLP width {shape[6]}"
    )


def preprocessing_from_hf(
    processor: dict[str, Any] | None, default: Preprocessing
) -> Preprocessing:
    """Size, crop, mean, std and filter of a ``preprocessor_config.json``, over ``default``."""
    if not processor:
        return default
    changes: dict[str, Any] = {}
    for ours, theirs in (("mean", "image_mean"), ("std", "image_std")):
        if isinstance(processor.get(theirs), list) and len(processor[theirs]) == 3:
            changes[ours] = tuple(float(v) for v in processor[theirs])
    resample = {v: k for k, v in _RESAMPLE.items()}.get(processor.get("resample", -1))
    if resample:
        changes["interpolation"] = resample
    size, crop = processor.get("size") or {}, processor.get("crop_size") or {}
    if processor.get("do_center_crop") and "shortest_edge" in size and "height" in crop:
        side = int(crop["height"])
        changes.update(size=side, crop_pct=side / int(size["shortest_edge"]), mode="center-crop")
    elif (
        not processor.get("do_center_crop")
        and "height" in size
        and size["height"] == size.get("width")
    ):
        changes.update(size=int(size["height"]), mode="resize")
    return dataclasses.replace(default, **changes)


def hf_model_type(config: BackboneConfig) -> str:
    """The transformers model type that holds this backbone exactly.

    Raises:
        ValueError: none does (timm backbones), in one line with the alternative.
    """
    if config.family == "timm":
        raise ValueError(
            f"{config.name} has no faithful transformers equivalent (its blocks are timm's); "
            "export it with --format timm or --format dinokit instead"
        )
    if config.family == "dinov3":
        raise ValueError(
            f"{config.name}: dinokit does not write transformers' DINOv3 layout "
            "(DINOv3ViTModel); export it with --format timm or --format dinokit instead"
        )
    if config.reg_tokens:
        return "dinov2_with_registers"
    return "dinov2" if config.layer_scale is not None or config.mlp == "swiglu" else "vit"


def hf_config(config: BackboneConfig, *, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` of a backbone written as a transformers model.

    Args:
        config: The backbone config.
        metadata: dinokit's self-description, stored under ``dinokit`` for the way back.
    """
    model_type = hf_model_type(config)
    common: dict[str, Any] = {
        "architectures": [MODEL_TYPES[model_type]],
        "model_type": model_type,
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "patch_size": config.patch_size,
        "image_size": config.pos_embed_size,
        "num_channels": 3,
        "hidden_act": "gelu",
        "qkv_bias": True,
        "layer_norm_eps": _HF_LAYER_NORM_EPS,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "dtype": "float32",
    }
    if model_type == "vit":
        common["intermediate_size"] = round(config.embed_dim * config.mlp_ratio)
    else:
        common.update(
            # transformers 5 types mlp_ratio as an int (every DINOv2 uses 4)
            mlp_ratio=int(config.mlp_ratio)
            if float(config.mlp_ratio).is_integer()
            else config.mlp_ratio,
            use_swiglu_ffn=config.mlp == "swiglu",
            layerscale_value=config.layer_scale if config.layer_scale is not None else 1.0,
            drop_path_rate=0.0,
        )
        if model_type == "dinov2_with_registers":
            common["num_register_tokens"] = config.reg_tokens
    if metadata is not None:
        common[DINOKIT_CONFIG_KEY] = metadata
    return common


def preprocessor_config(preprocessing: Preprocessing) -> dict[str, Any]:
    """A ``BitImageProcessor`` config doing dinokit's ``center-crop`` (or ``resize``) mode.

    ``letterbox`` and ``native`` have no transformers processor: they are written as
    ``center-crop`` (DINO's evaluation), with a log line.
    """
    p = preprocessing
    config: dict[str, Any] = {
        "image_processor_type": "BitImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "resample": _RESAMPLE.get(p.interpolation, 3),
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(p.mean),
        "image_std": list(p.std),
    }
    if p.mode == "resize":
        config.update(size={"height": p.size, "width": p.size}, do_center_crop=False)
        return config
    if p.mode != "center-crop":
        logger.info(
            "preprocessing mode %s has no transformers processor: wrote center-crop", p.mode
        )
    config.update(
        size={"shortest_edge": round(p.size / p.crop_pct)},
        do_center_crop=True,
        crop_size={"height": p.size, "width": p.size},
    )
    return config


def save_transformers(
    backbone: Backbone, out: str | Path, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a backbone as a transformers model folder, all files at once.

    The folder is assembled beside ``out`` and renamed into place (replacing an existing
    ``out``), so it never holds a partial model.

    Args:
        backbone: The model.
        out: The folder to create.
        metadata: dinokit's self-description, kept in ``config.json`` under ``dinokit``.

    Returns:
        The folder, holding ``config.json``, ``model.safetensors`` and
        ``preprocessor_config.json``.
    """
    from safetensors.torch import save_file

    config = backbone.config
    model_type = hf_model_type(config)
    tensors = timm_to_hf(
        {k: v.detach().cpu() for k, v in backbone.vit.state_dict().items()},
        model_type=model_type,
        swiglu=config.mlp == "swiglu",
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(hf_config(config, metadata=metadata), indent=2))
        (tmp / PREPROCESSOR_FILE).write_text(
            json.dumps(preprocessor_config(config.preprocessing), indent=2)
        )
        for path in tmp.iterdir():
            path.chmod(default_mode())
        tmp.chmod(default_mode(folder=True))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
