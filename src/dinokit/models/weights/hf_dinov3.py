"""transformers' ``DINOv3ViTModel`` keys mapped to the official DINOv3 ones.

transformers (``models/dinov3_vit/modeling_dinov3_vit.py``) stores the embeddings under
``embeddings.`` (no positional table: RoPE), the blocks under ``layer.<i>.`` with
separate ``q_proj``/``k_proj``/``v_proj`` (no key bias: ``key_bias=False``) and ``o_proj``,
LayerScale ``layer_scale{1,2}.lambda1``, and the MLP as ``up_proj``/``down_proj`` or, gated,
``gate_proj``/``up_proj``/``down_proj`` (``act(gate) * up``). The official layout
(facebookresearch/dinov3) fuses q, k, v into ``qkv`` with the key bias masked to zero, so the
mapping writes a zero key third and a ``bias_mask`` as the official files hold it; the RoPE
periods are not stored (transformers computes them by the reference formula, and so does
dinokit for files without them).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from .convert import StateDict

MODEL_TYPE = "dinov3_vit"
# Files name the blocks ``layer.<i>.``; the model in memory ``model.layer.<i>.``.
_LAYER = re.compile(r"^(?:model\.)?layer\.(\d+)\.(.+)$")
_GLOBAL = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "storage_tokens",
    "embeddings.mask_token": "mask_token",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
_LAYER_RENAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.o_proj": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}
_GATED = {"mlp.gate_proj": "mlp.w1", "mlp.up_proj": "mlp.w2", "mlp.down_proj": "mlp.w3"}
_PLAIN = {"mlp.up_proj": "mlp.fc1", "mlp.down_proj": "mlp.fc2"}


def is_hf_dinov3_layout(state_dict: StateDict) -> bool:
    """transformers' DINOv3 keys: register tokens and RoPE blocks, no positional table."""
    return (
        "embeddings.register_tokens" in state_dict
        and "embeddings.position_embeddings" not in state_dict
        and any(k.endswith("layer.0.attention.q_proj.weight") for k in state_dict)
    )


def hf_dinov3_to_official(state_dict: StateDict, *, source: str) -> StateDict:
    """The official DINOv3 state dict of a ``DINOv3ViTModel`` one.

    Raises:
        ValueError: a key bias (the official models have none), or keys this mapping does not
            know (listed).
    """
    gated = any(k.endswith(".mlp.gate_proj.weight") for k in state_dict)
    mlp = _GATED if gated else _PLAIN
    out: StateDict = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if key in _GLOBAL:
            out[_GLOBAL[key]] = value
            continue
        match = _LAYER.match(key)
        if match is None:
            unknown.append(key)
            continue
        index, rest = int(match.group(1)), match.group(2)
        if rest.startswith("attention.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
            qkv.setdefault(index, {})[rest[len("attention.") :]] = value
            continue
        stem, _, leaf = rest.rpartition(".")
        name = _LAYER_RENAMES.get(rest) or _LAYER_RENAMES.get(stem) or mlp.get(stem)
        if name is None:
            unknown.append(key)
        elif rest in _LAYER_RENAMES:
            out[f"blocks.{index}.{name}"] = value
        else:
            out[f"blocks.{index}.{name}.{leaf}"] = value
    if unknown:
        raise ValueError(f"{source}: unexpected DINOv3ViTModel keys {sorted(unknown)[:12]}")
    for index, parts in qkv.items():
        if "k_proj.bias" in parts:
            raise ValueError(
                f"{source}: layer {index} has a key bias; DINOv3 models have none (key_bias)"
            )
        block = f"blocks.{index}.attn.qkv."
        q, k, v = (parts[f"{n}_proj.weight"] for n in "qkv")
        out[block + "weight"] = torch.cat([q, k, v])
        zeros = torch.zeros(q.shape[0], dtype=q.dtype)
        q_bias, v_bias = parts.get("q_proj.bias", zeros), parts.get("v_proj.bias", zeros)
        out[block + "bias"] = torch.cat([q_bias, zeros, v_bias])
        out[block + "bias_mask"] = torch.cat(
            [torch.ones_like(zeros), zeros, torch.ones_like(zeros)]
        )
    return out


def check_hf_dinov3_config(config: dict[str, Any], source: str) -> None:
    """Refuse ``DINOv3ViTModel`` variants dinokit's DINOv3 blocks do not compute.

    Raises:
        ValueError: an activation other than the reference's (GELU MLP, SiLU-gated SwiGLU),
            a RoPE base other than 100, or another LayerNorm epsilon (one line, all listed).
    """
    gated = bool(config.get("use_gated_mlp", False))
    expected_act = "silu" if gated else "gelu"
    problems = []
    if config.get("hidden_act", "gelu") != expected_act:
        problems.append(f"hidden_act {config.get('hidden_act')!r} (expected {expected_act!r})")
    if float(config.get("rope_theta", 100.0)) != 100.0:
        problems.append(f"rope_theta {config.get('rope_theta')}")
    if float(config.get("layer_norm_eps", 1e-5)) != 1e-5:
        problems.append(f"layer_norm_eps {config.get('layer_norm_eps')}")
    if problems:
        raise ValueError(f"{source}: no dinokit DINOv3 backbone has {', '.join(problems)}")
