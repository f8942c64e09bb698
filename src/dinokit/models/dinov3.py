"""DINOv3 ViTs (Simeoni et al. 2025) built on timm's ``Eva`` with rotary positions.

facebookresearch/dinov3 ``models/vision_transformer.py`` is a ViT with 4 register ("storage")
tokens, LayerScale, LayerNorm eps 1e-5 (``layernormbf16``), a GELU MLP or a SwiGLU FFN, a
query/value bias on ``qkv`` (the key bias is masked to zero: ``mask_k_bias``) and axial RoPE
(``layers/rope_position_encoding.py``): patch centres ``(i + 0.5) / H`` and ``(j + 0.5) / W``
mapped to [-1, 1] (``normalize_coords="separate"``), angles ``2 pi c / period`` with periods
``100 ** (2k / (D_head / 2))``, k < D_head / 4, applied to the patch tokens' queries and keys
(rotate-half layout); CLS and registers get no position. Any input that is a multiple of the
patch size works without resampling anything.

timm's ``Eva`` with ``rope_type="dinov3"`` computes the same thing. One difference is kept
out: timm recomputes ``periods`` and never loads them, while the reference loads its
``rope_embed.periods`` buffer from the file, so here the buffer is part of the state dict
(``rope.periods``) and a file's values are used as the reference uses them.
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any

import torch
from torch import Tensor, nn

from .config import BackboneConfig

ROPE_BASE = 100.0
"""``pos_embed_rope_base`` of every ``dinov3/hub/backbones.py`` entry point."""
LAYER_NORM_EPS = 1e-5
"""``norm_layer="layernormbf16"``: ``nn.LayerNorm(eps=1e-5)`` in the reference."""
PERIODS_KEY = "rope.periods"


def swiglu_hidden(config: BackboneConfig) -> int:
    """DINOv3's SwiGLU hidden width: ``int(2/3 * int(ratio * D))`` rounded up to the alignment.

    (``SwiGLUFFN`` in ``dinov3/layers/ffn_layers.py``; 1536 for S+/16, 5120 for H+/16, 8192
    for 7B/16.)
    """
    d = int(int(config.embed_dim * config.mlp_ratio) * 2 / 3)
    return d + (-d % config.swiglu_align)


def rope_periods(head_dim: int, base: float = ROPE_BASE) -> Tensor:
    """(head_dim / 4,) float32 RoPE periods ``base ** (2k / (head_dim / 2))`` (reference init)."""
    k = torch.arange(head_dim // 4, dtype=torch.float32)
    return base ** (2 * k / (head_dim // 2))


def build_eva(config: BackboneConfig, *, drop_path_rate: float = 0.0) -> nn.Module:
    """The timm ``Eva`` of a ``dinov3`` config (random weights, reference RoPE periods).

    Args:
        config: A ``dinov3`` family config.
        drop_path_rate: Stochastic depth rate (students only).
    """
    from timm.layers.norm import LayerNorm
    from timm.models.eva import Eva

    if config.embed_dim % (4 * config.num_heads):
        raise ValueError(f"{config.name}: RoPE needs embed_dim divisible by 4 * num_heads")
    mlp: dict[str, Any] = {"mlp_ratio": config.mlp_ratio}
    if config.mlp == "swiglu":
        # timm's SwiGLU takes the hidden width itself; + 0.5 keeps int(D * ratio) exact.
        hidden = swiglu_hidden(config)
        mlp = {
            "mlp_ratio": (hidden + 0.5) / config.embed_dim,
            "swiglu_mlp": True,
            "swiglu_align_to": config.swiglu_align or 8,
        }
    vit = Eva(
        img_size=config.pos_embed_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        # q and v biases, k bias fixed at zero: the reference's masked-key-bias qkv.
        qkv_bias=True,
        init_values=config.layer_scale,
        num_reg_tokens=config.reg_tokens,
        use_abs_pos_emb=False,
        use_rot_pos_emb=True,
        rope_type="dinov3",
        rope_temperature=ROPE_BASE,
        rope_rotate_half=True,
        use_fc_norm=False,
        norm_layer=partial(LayerNorm, eps=LAYER_NORM_EPS),
        num_classes=0,
        global_pool="token",
        dynamic_img_size=True,
        drop_path_rate=drop_path_rate,
        **mlp,
    )
    rope = vit.rope
    stored = _stored_periods_rope()
    assert isinstance(rope, stored.__mro__[1]), type(rope)
    rope.__class__ = stored
    del rope._buffers["periods"]
    rope.register_buffer(
        "periods", rope_periods(config.embed_dim // config.num_heads), persistent=True
    )
    return vit


@cache
def _stored_periods_rope() -> type[nn.Module]:
    """timm's DINOv3 RoPE, with ``periods`` a persistent float32 buffer that keeps its values.

    timm rebuilds its periods from the formula (as a non-persistent buffer) whenever a cast
    such as ``model.to(torch.bfloat16)`` lowers them; here they stay the loaded float32 values
    (the reference computes RoPE in float32 from its loaded buffer: ``pos_embed_rope_dtype``).
    """

    from timm.layers.pos_embed_sincos import RotaryEmbeddingDinoV3

    class StoredPeriodsRope(RotaryEmbeddingDinoV3):
        def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> nn.Module:
            kept: Tensor = self._buffers["periods"]  # type: ignore[assignment]
            module: nn.Module = super()._apply(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
            moved: Tensor = self._buffers["periods"]  # type: ignore[assignment]
            self.register_buffer("periods", kept.to(moved.device, torch.float32), persistent=True)
            return module

    return StoredPeriodsRope


def is_eva(vit: nn.Module) -> bool:
    """Whether a backbone's network is a RoPE ``Eva`` (DINOv3), not a ``VisionTransformer``."""
    return getattr(vit, "rope", None) is not None


def eva_embed(vit: Any, x: Tensor) -> tuple[Tensor, Tensor]:
    """Tokens and rotary table of an image batch.

    Args:
        vit: The ``Eva``.
        x: (B, 3, H, W) images.

    Returns:
        (B, 1 + R + h * w, D) tokens (CLS, registers, patches) and the (h * w, 2 * D_head)
        sin/cos table for the patch grid.
    """
    tokens, rope = vit._pos_embed(vit.patch_embed(x))
    out: Tensor = vit.norm_pre(tokens)
    return out, rope


def eva_attention(block: Any, x: Tensor, rope: Tensor) -> Tensor:
    """Softmax attention weights of one ``Eva`` block.

    Args:
        block: The block (its ``norm1`` and ``attn`` are used).
        x: (B, T, D) tokens entering the block.
        rope: The sin/cos table of :func:`eva_embed`.

    Returns:
        (B, heads, T, T) attention weights; rows sum to 1.
    """
    from timm.layers.pos_embed_sincos import apply_rot_embed_cat

    attn = block.attn
    y = block.norm1(x)
    b, t, _ = y.shape
    bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
    qkv = nn.functional.linear(y, attn.qkv.weight, bias)
    q, k, _ = qkv.reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    n = attn.num_prefix_tokens
    q = torch.cat([q[:, :, :n], apply_rot_embed_cat(q[:, :, n:], rope, half=True)], dim=2)
    k = torch.cat([k[:, :, :n], apply_rot_embed_cat(k[:, :, n:], rope, half=True)], dim=2)
    weights: Tensor = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    return weights
