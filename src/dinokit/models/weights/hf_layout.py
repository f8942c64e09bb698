"""Hugging Face ``transformers`` checkpoints: ``Dinov2Model``, ``Dinov2WithRegistersModel``
and DINO v1 ``ViTModel`` folders, mapped to and from the official DINO / timm keys
(``DINOv3ViTModel`` in :mod:`.hf_dinov3`, read only).

Key names follow transformers' own converters (``convert_dinov2_to_hf.py`` and
``convert_dino_to_pytorch.py`` in huggingface/transformers): separate ``query``/``key``/
``value`` projections (timm fuses them into ``qkv``, in that order), ``layer_scale{1,2}.lambda1``
(LayerScale ``ls{1,2}.gamma``), the fused SwiGLU ``mlp.weights_in``/``weights_out`` (timm's
packed ``fc1``/``fc2``), ``embeddings.position_embeddings`` with the CLS position first, and a
training-only ``mask_token``. transformers 5 names the same tensors ``q_proj``/``k_proj``/
``v_proj``/``o_proj`` and ``gate_proj``/``up_proj``/``down_proj`` in memory (files keep the names
above); both are read.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .convert import StateDict
from .hf_dinov3 import hf_dinov3_to_official, is_hf_dinov3_layout

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR_FILE = "preprocessor_config.json"
MODEL_TYPES = {
    "dinov2": "Dinov2Model",
    "dinov2_with_registers": "Dinov2WithRegistersModel",
    "vit": "ViTModel",
    "dinov3_vit": "DINOv3ViTModel",
}
"""``config.json`` model types read, and the transformers class of each."""

_LAYER = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)$")
_BASE_PREFIXES = ("dinov2.", "vit.")  # the base model inside *ForImageClassification files
_QKV = ("query", "key", "value")
_QKV_5 = {"q_proj": "query", "k_proj": "key", "v_proj": "value"}
# Per-layer tensors with one timm counterpart: transformers suffix -> timm suffix.
_LAYER_RENAMES = {
    "norm1": "norm1",  # Dinov2
    "norm2": "norm2",
    "layernorm_before": "norm1",  # ViT
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "intermediate.dense": "mlp.fc1",  # ViT
    "output.dense": "mlp.fc2",
    "mlp.weights_in": "mlp.fc1",  # SwiGLU, packed as (gate, up) like timm's SwiGLUPacked
    "mlp.weights_out": "mlp.fc2",
    "mlp.down_proj": "mlp.fc2",
}
_LAYER_SCALE = {"layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
_GLOBAL_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


@dataclass(frozen=True)
class HFFolder:
    """A transformers checkpoint folder.

    Attributes:
        folder: The folder.
        weights: Its ``model.safetensors`` or ``pytorch_model.bin``.
        config: The parsed ``config.json``.
        preprocessor: The parsed ``preprocessor_config.json``, or None.
        label: How to name it (``hf:facebook/dinov2-small`` or the folder).
    """

    folder: Path
    weights: Path
    config: dict[str, Any]
    preprocessor: dict[str, Any] | None
    label: str


def is_hf_layout(state_dict: StateDict) -> bool:
    """Whether a state dict uses transformers' ViT / DINOv2 key names."""
    return any("embeddings.patch_embeddings." in key for key in state_dict)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, with a one-line error naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def open_hf_folder(folder: Path, *, label: str | None = None) -> HFFolder:
    """Check a transformers checkpoint folder and read its configs.

    Raises:
        FileNotFoundError: no ``config.json`` or no weights file in it.
        ValueError: a model type dinokit does not read.
    """
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; is it a transformers model folder?")
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        sharded = sorted(p.name for p in folder.glob("*.index.json"))
        hint = " (sharded checkpoints are not read: re-save with a larger max_shard_size)"
        raise FileNotFoundError(
            f"{folder}: no {' or '.join(WEIGHT_FILES)}{hint if sharded else ''}"
        )
    config = read_json(config_path)
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{config_path}: model_type {model_type!r} is not one dinokit reads "
            f"({', '.join(MODEL_TYPES)}: DINOv2, DINOv2 with registers, DINO v1 ViT, DINOv3 ViT)"
        )
    preprocessor_path = folder / PREPROCESSOR_FILE
    preprocessor = read_json(preprocessor_path) if preprocessor_path.is_file() else None
    return HFFolder(folder, weights, config, preprocessor, label or str(folder))


def hf_to_official(state_dict: StateDict, *, source: str) -> StateDict:
    """transformers keys -> official DINO v1 / DINOv2 keys (timm names, DINOv2 extras kept).

    The result keeps ``mask_token`` and ``register_tokens`` with the CLS position inside
    ``pos_embed``, as the official DINOv2 files do; :func:`~.convert.to_timm_layout` finishes
    the mapping. A ``pooler`` (``ViTModel`` built with its default pooling layer: a dense
    layer and tanh on the CLS token, no part of DINO) is left out with a warning. Keys that
    map to nothing keep their name, so the strict load lists them.

    Args:
        state_dict: The tensors of a ``model.safetensors`` / ``pytorch_model.bin``.
        source: Name of the file, for messages.
    """
    if is_hf_dinov3_layout(state_dict):  # DINOv3ViTModel: to the official DINOv3 keys
        return hf_dinov3_to_official(state_dict, source=source)
    sd = dict(state_dict)
    if any(k.startswith(_BASE_PREFIXES) for k in sd):
        sd = {_strip_base(k): v for k, v in sd.items()}
    pooler = sorted(k for k in sd if k.startswith("pooler."))
    if pooler:
        logger.warning(
            "%s: left out ViTModel's pooler %s (not part of the backbone)", source, pooler
        )
        for key in pooler:
            del sd[key]
    out: StateDict = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    swiglu: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in sd.items():
        if key in _GLOBAL_RENAMES:
            out[_GLOBAL_RENAMES[key]] = value
            continue
        match = _LAYER.match(key)
        if match is None:
            out[key] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        part, _, kind = rest.rpartition(".")
        if rest in _LAYER_SCALE:
            out[f"blocks.{index}.{_LAYER_SCALE[rest]}"] = value
        elif part.startswith("attention.attention.") and part.split(".")[-1] in _QKV:
            qkv.setdefault((index, kind), {})[part.split(".")[-1]] = value
        elif part.startswith("attention.") and part.split(".")[-1] in _QKV_5:
            qkv.setdefault((index, kind), {})[_QKV_5[part.split(".")[-1]]] = value
        elif part in ("mlp.gate_proj", "mlp.up_proj"):
            swiglu.setdefault((index, kind), {})[part.split(".")[-1]] = value
        elif part in _LAYER_RENAMES:
            out[f"blocks.{index}.{_LAYER_RENAMES[part]}.{kind}"] = value
        else:
            out[key] = value
    for (index, kind), parts in qkv.items():
        if set(parts) != set(_QKV):
            missing = sorted(set(_QKV) - set(parts))
            raise ValueError(f"{source}: layer {index} lacks the attention {kind} of {missing}")
        out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts[n] for n in _QKV])
    for (index, kind), parts in swiglu.items():
        if set(parts) != {"gate_proj", "up_proj"}:
            raise ValueError(f"{source}: layer {index} lacks half of its SwiGLU {kind}")
        out[f"blocks.{index}.mlp.fc1.{kind}"] = torch.cat([parts["gate_proj"], parts["up_proj"]])
    return out


def _strip_base(key: str) -> str:
    for prefix in _BASE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def timm_to_hf(state_dict: StateDict, *, model_type: str, swiglu: bool) -> StateDict:
    """timm ``VisionTransformer`` keys -> the keys transformers writes for ``model_type``.

    Args:
        state_dict: A dinokit backbone's ``vit.state_dict()`` (timm layout: with registers,
            the CLS position is folded into ``cls_token`` and ``pos_embed`` has no CLS row).
        model_type: ``vit``, ``dinov2`` or ``dinov2_with_registers``.
        swiglu: The MLP is DINOv2's fused SwiGLU.

    Returns:
        The tensors of ``model.safetensors``. Blocks without LayerScale get ``lambda1`` = 1
        when written as DINOv2 (an exact rewrite); the DINOv2 ``mask_token`` is zeros (it is
        only used by masked pretraining).
    """
    sd = dict(state_dict)
    dim = sd["cls_token"].shape[-1]
    out: StateDict = {}
    vit = model_type == "vit"
    cls, pos = sd.pop("cls_token"), sd.pop("pos_embed")
    if "reg_token" in sd:
        # The CLS position is already inside the CLS token: write a zero CLS position.
        out["embeddings.register_tokens"] = sd.pop("reg_token")
        pos = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    out["embeddings.cls_token"] = cls
    out["embeddings.position_embeddings"] = pos
    if not vit:
        out["embeddings.mask_token"] = torch.zeros(1, dim, dtype=cls.dtype)
    inverse = {v: k for k, v in _GLOBAL_RENAMES.items()}
    names = {
        "norm1": "layernorm_before" if vit else "norm1",
        "norm2": "layernorm_after" if vit else "norm2",
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense" if vit else ("mlp.weights_in" if swiglu else "mlp.fc1"),
        "mlp.fc2": "output.dense" if vit else ("mlp.weights_out" if swiglu else "mlp.fc2"),
        "ls1.gamma": "layer_scale1.lambda1",
        "ls2.gamma": "layer_scale2.lambda1",
    }
    depth = 0
    for key, value in sd.items():
        if key in inverse:
            out[inverse[key]] = value
            continue
        match = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$", key)
        if match is None:
            raise ValueError(f"{key}: a tensor with no transformers counterpart")
        index, part, kind = int(match.group(1)), match.group(2), match.group(3)
        depth = max(depth, index + 1)
        prefix = f"encoder.layer.{index}."
        if part == "attn.qkv":
            for name, chunk in zip(_QKV, value.chunk(3, dim=0), strict=True):
                out[f"{prefix}attention.attention.{name}.{kind}"] = chunk
        elif f"{part}.{kind}" in names:
            out[prefix + names[f"{part}.{kind}"]] = value
        elif part in names:
            out[f"{prefix}{names[part]}.{kind}"] = value
        else:
            raise ValueError(f"{key}: a tensor with no transformers counterpart")
    if not vit:
        for index in range(depth):
            for n in (1, 2):
                out.setdefault(
                    f"encoder.layer.{index}.layer_scale{n}.lambda1",
                    torch.ones(dim, dtype=cls.dtype),
                )
    return {k: v.contiguous() for k, v in out.items()}
