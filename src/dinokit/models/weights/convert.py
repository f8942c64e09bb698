"""State-dict layouts: prefixes, DINOv2 -> timm keys, and strict loading with clear errors.

Every prefix fix lives here (``module.`` from DDP, ``_orig_mod.`` from ``torch.compile``,
``backbone.``/``head.`` from DINO's ``MultiCropWrapper``), so no caller repeats one.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

StateDict = dict[str, Tensor]
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")


def clean_state_dict(state_dict: StateDict) -> StateDict:
    """Strip wrapper prefixes (``module.``, ``_orig_mod.``) from every key, repeatedly."""
    cleaned: StateDict = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        cleaned[key] = value
    return cleaned


def split_backbone_head(state_dict: StateDict) -> tuple[StateDict, StateDict]:
    """Split a DINO ``MultiCropWrapper`` state dict into backbone and head parts.

    Keys ``backbone.*`` go to the backbone and ``head.*`` to the head (prefixes removed);
    a state dict without ``backbone.`` keys is all backbone.

    Returns:
        (backbone state dict, head state dict); the head part may be empty.
    """
    state_dict = clean_state_dict(state_dict)
    if not any(k.startswith("backbone.") for k in state_dict):
        return state_dict, {}
    backbone: StateDict = {}
    head: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            backbone[key[len("backbone.") :]] = value
        elif key.startswith("head."):
            head[key[len("head.") :]] = value
        else:
            backbone[key] = value  # left for the key check to report
    return backbone, head


def to_timm_layout(state_dict: StateDict) -> StateDict:
    """Map a DINOv2 or DINOv3 official state dict onto timm's keys; other layouts pass through.

    DINOv3 files (``storage_tokens``) go through :func:`dinov3_to_eva`.

    DINOv2 differences: ``mask_token`` (training only: dropped), fused SwiGLU ``w12``/``w3``
    (timm ``fc1``/``fc2``), chunked ``blocks.c.i.`` keys, and ``register_tokens``: timm keeps
    registers and CLS out of the positional embedding, so the CLS position is added to the
    CLS token (an exact rewrite: DINOv2 adds that position to the CLS token every forward).
    """
    if "storage_tokens" in state_dict:
        return dinov3_to_eva(state_dict)
    sd = dict(state_dict)
    sd.pop("mask_token", None)
    if "register_tokens" in sd:
        pos = sd.pop("pos_embed")
        sd["reg_token"] = sd.pop("register_tokens")
        sd["cls_token"] = sd.pop("cls_token") + pos[:, :1]
        sd["pos_embed"] = pos[:, 1:]
    out: StateDict = {}
    for key, value in sd.items():
        key = _CHUNKED_BLOCK.sub(r"blocks.\1.", key)
        key = re.sub(r"^(blocks\.\d+\.mlp)\.w12\.", r"\1.fc1.", key)
        key = re.sub(r"^(blocks\.\d+\.mlp)\.w3\.", r"\1.fc2.", key)
        out[key] = value
    return out


# Official DINOv3 key fragments -> timm Eva's (dinov3/layers: LayerScale ls1/ls2.gamma,
# SwiGLUFFN silu(w1(x)) * w2(x) then w3; timm SwiGLU act(fc1_g(x)) * fc1_x(x) then fc2).
_DINOV3_RENAMES = (
    (re.compile(r"^(blocks\.\d+)\.ls1\.gamma$"), r"\1.gamma_1"),
    (re.compile(r"^(blocks\.\d+)\.ls2\.gamma$"), r"\1.gamma_2"),
    (re.compile(r"^(blocks\.\d+\.mlp)\.w1\."), r"\1.fc1_g."),
    (re.compile(r"^(blocks\.\d+\.mlp)\.w2\."), r"\1.fc1_x."),
    (re.compile(r"^(blocks\.\d+\.mlp)\.w3\."), r"\1.fc2."),
)
# Training-only parts of the official files: the iBOT mask token, and the CLS/register norm
# of local crops (``untie_global_and_local_cls_norm``: "never used during eval").
_DINOV3_TRAINING_ONLY = ("mask_token", "local_cls_norm.weight", "local_cls_norm.bias")


def dinov3_to_eva(state_dict: StateDict) -> StateDict:
    """Map an official DINOv3 state dict (``dinov3/models/vision_transformer.py``) onto Eva keys.

    ``storage_tokens`` -> ``reg_token``; ``rope_embed.periods`` -> ``rope.periods`` (float32,
    the values the reference loads); ``qkv.bias`` times its ``bias_mask`` -> ``q_bias`` and
    ``v_bias`` (the key third must be zero, as ``mask_k_bias`` makes it); LayerScale and
    SwiGLU renamed; the training-only mask token and local-crop norm dropped.

    Raises:
        ValueError: a key bias that the mask does not zero (not a DINOv3 hub model).
    """
    out: StateDict = {}
    for key, value in state_dict.items():
        if key in _DINOV3_TRAINING_ONLY or key.endswith(".bias_mask"):
            continue
        if key == "storage_tokens":
            out["reg_token"] = value
        elif key == "rope_embed.periods":
            out["rope.periods"] = value.float()
        elif key.endswith(".attn.qkv.bias"):
            mask = state_dict.get(key + "_mask")
            bias = value * mask.to(value.dtype) if mask is not None else value
            q, k, v = bias.chunk(3)
            if bool(k.any()):
                raise ValueError(
                    f"{key}: the key bias is not masked to zero, which DINOv3 models "
                    "(mask_k_bias=True) require; is this a DINOv3 hub checkpoint?"
                )
            prefix = key[: -len("qkv.bias")]
            out[prefix + "q_bias"], out[prefix + "v_bias"] = q, v
        else:
            for pattern, repl in _DINOV3_RENAMES:
                key = pattern.sub(repl, key)
            out[key] = value
    return out


def _complete_eva_state(sd: StateDict, expected: StateDict) -> StateDict:
    """Fill what timm's DINOv3 files leave out, exactly as timm runs them.

    timm's files hold no ``rope.periods`` (timm computes them: the backbone's buffer has the
    same formula) and its ``vit_*_dinov3`` models without ``_qkvb`` have no q/v bias (zero).
    """
    sd = dict(sd)
    if "rope.periods" in expected and "rope.periods" not in sd:
        sd["rope.periods"] = expected["rope.periods"].clone()
    for key in expected:
        if key.endswith((".q_bias", ".v_bias")) and key not in sd:
            weight = sd.get(key.rsplit(".", 1)[0] + ".qkv.weight")
            if weight is not None:
                sd[key] = torch.zeros_like(expected[key])
    return sd


def _resample_pos_embed(value: Tensor, target: Tensor, num_prefix: int) -> Tensor:
    from timm.layers.pos_embed import resample_abs_pos_embed

    old_n = value.shape[1] - num_prefix
    new_n = target.shape[1] - num_prefix
    old_side, new_side = round(old_n**0.5), round(new_n**0.5)
    if old_side * old_side != old_n or new_side * new_side != new_n:
        raise ValueError(
            f"pos_embed: cannot map {tuple(value.shape)} onto {tuple(target.shape)} "
            "(not a square grid)"
        )
    logger.info("resampling pos_embed from %dx%d to %dx%d", old_side, old_side, new_side, new_side)
    resampled: Tensor = resample_abs_pos_embed(
        value, new_size=(new_side, new_side), num_prefix_tokens=num_prefix
    )
    return resampled


def load_backbone_state(vit: nn.Module, state_dict: StateDict, *, source: str) -> None:
    """Load a backbone state dict into a timm ViT strictly, with actionable errors.

    Converts DINOv2 keys, resamples a positional embedding made for another image size,
    then requires the exact key set and shapes.

    Args:
        vit: The timm ``VisionTransformer`` to fill.
        state_dict: Backbone weights in any known layout (wrapper prefixes removed).
        source: Name of the file, for messages.

    Raises:
        ValueError: missing or unexpected keys (all listed), or a shape mismatch (key and
            both shapes).
    """
    sd = to_timm_layout(clean_state_dict(state_dict))
    expected = vit.state_dict()
    sd = _complete_eva_state(sd, expected)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        raise ValueError(
            f"{source}: weights do not fit this backbone: {'; '.join(parts)}; "
            "check that --model names the architecture these weights were trained with"
        )
    num_prefix = (
        0 if getattr(vit, "no_embed_class", False) else int(getattr(vit, "num_prefix_tokens", 1))
    )
    for key, target in expected.items():
        value = sd[key]
        if key == "pos_embed" and value.shape != target.shape and value.ndim == 3:
            sd[key] = value = _resample_pos_embed(value, target, num_prefix)
        if value.shape != target.shape:
            raise ValueError(
                f"{source}: shape mismatch for {key}: file has {tuple(value.shape)}, "
                f"backbone expects {tuple(target.shape)}; check --model"
            )
    vit.load_state_dict(sd, strict=True)


def _short(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... ({len(keys) - limit} more)' if len(keys) > limit else ''}]"
