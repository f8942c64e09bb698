"""State-dict layouts: prefixes, DINOv2 -> timm keys, and strict loading with clear errors.

Every prefix fix lives here (``module.`` from DDP, ``_orig_mod.`` from ``torch.compile``,
``backbone.``/``head.`` from DINO's ``MultiCropWrapper``), so no caller repeats one.
"""

from __future__ import annotations

import logging
import re

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
    """Map a DINOv2 official state dict onto timm's ViT keys; other layouts pass through.

    DINOv2 differences: ``mask_token`` (training only: dropped), fused SwiGLU ``w12``/``w3``
    (timm ``fc1``/``fc2``), chunked ``blocks.c.i.`` keys, and ``register_tokens``: timm keeps
    registers and CLS out of the positional embedding, so the CLS position is added to the
    CLS token (an exact rewrite: DINOv2 adds that position to the CLS token every forward).
    """
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
