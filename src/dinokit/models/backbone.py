"""The :class:`Backbone`: a timm ``VisionTransformer`` with DINO's views of its tokens.

DINO v1's official keys are timm's keys, so DINO backbones are timm ViTs; DINOv2 maps onto
timm's ViT with LayerScale, registers and SwiGLU (Oquab et al. 2023; Darcet et al. 2024).
Positional embeddings are resampled to any input that is a multiple of the patch size, the way
the family's reference does it (``config.pos_embed_interp``, :mod:`.pos_embed`). DINOv3
(Simeoni et al. 2025) is timm's RoPE ``Eva`` (:mod:`.dinov3`), whose rotary positions fit
any grid as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .config import BackboneConfig
from .dinov3 import build_eva, eva_attention, eva_embed, is_eva
from .pos_embed import resample_patch_pos_embed

logger = logging.getLogger(__name__)


@dataclass
class Features:
    """Token groups of one forward pass, all after the final norm.

    Attributes:
        cls: (B, D) CLS token.
        patch_tokens: (B, N, D) patch tokens, N = (H / p) * (W / p), row-major.
        register_tokens: (B, R, D) register tokens (R = 0 without registers).
        block_cls: (B, n, D) CLS tokens of the last n blocks (each normed), or None.
        grid: (H / p, W / p) patch grid of the input.
    """

    cls: Tensor
    patch_tokens: Tensor
    register_tokens: Tensor
    block_cls: Tensor | None
    grid: tuple[int, int]


def build_vit(config: BackboneConfig, *, drop_path_rate: float = 0.0) -> nn.Module:
    """Build the timm ``VisionTransformer`` (``Eva`` for DINOv3) for a config (random weights).

    Args:
        config: The backbone description.
        drop_path_rate: Stochastic depth rate (students only; teachers use 0).
    """
    import timm
    from timm.layers.mlp import SwiGLUPacked
    from timm.models.vision_transformer import VisionTransformer

    if config.family == "dinov3":
        return build_eva(config, drop_path_rate=drop_path_rate)
    if config.family == "timm":
        assert config.timm_name is not None
        return timm.create_model(
            config.timm_name,
            pretrained=False,
            num_classes=0,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
        )
    mlp_kwargs: dict[str, object] = {"mlp_ratio": config.mlp_ratio}
    if config.mlp == "swiglu":
        # DINOv2's fused SwiGLU: hidden = round_up_8(2/3 * ratio * D), packed as 2 * hidden.
        hidden = (int(config.embed_dim * config.mlp_ratio * 2 / 3) + 7) // 8 * 8
        mlp_kwargs = {
            "mlp_ratio": (2 * hidden + 0.5) / config.embed_dim,
            "mlp_layer": SwiGLUPacked,
            "act_layer": nn.SiLU,
        }
    return VisionTransformer(
        img_size=config.pos_embed_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        qkv_bias=True,
        init_values=config.layer_scale,
        reg_tokens=config.reg_tokens,
        # With registers, DINOv2's CLS position is folded into the CLS token (timm layout).
        no_embed_class=config.reg_tokens > 0,
        num_classes=0,
        dynamic_img_size=True,
        drop_path_rate=drop_path_rate,
        **mlp_kwargs,  # type: ignore[arg-type]
    )


RANDOM_INIT = "random init"
"""``Backbone.source`` of weights that were initialised at random (no file loaded)."""


def random_backbone(config: BackboneConfig, *, seed: int) -> Backbone:
    """``config``'s architecture with random weights initialised from ``seed`` (on the CPU, in
    eval mode; the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Backbone(build_vit(config), config).eval()


class Backbone(nn.Module):
    """A ViT backbone with its config (architecture + preprocessing) attached.

    Calling it returns the CLS token, the feature DINO trains and evaluates.

    Attributes:
        vit: The timm ``VisionTransformer`` (its state dict is the official DINO key layout), or
            for DINOv3 timm's ``Eva`` (timm's DINOv3 keys plus ``rope.periods``).
        config: Architecture and preprocessing.
        source: Where the weights came from (a path, ``official``, or ``random init``).
    """

    vit: Any  # timm VisionTransformer (timm ships no type information)

    def __init__(self, vit: nn.Module, config: BackboneConfig, source: str = RANDOM_INIT):
        super().__init__()
        self.vit = vit
        self.config = config
        self.source = source

    @property
    def embed_dim(self) -> int:
        """Token width D."""
        return self.config.embed_dim

    @property
    def patch_size(self) -> int:
        """Patch side in pixels; inputs must be multiples of it."""
        return self.config.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        """CLS plus register tokens before the patch tokens."""
        return 1 + self.config.reg_tokens

    def _check_input(self, x: Tensor) -> tuple[int, int]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"image size {h}x{w} is not a multiple of the patch size {p}; "
                f"resize or crop to multiples of {p}"
            )
        return h // p, w // p

    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, T, D) tokens entering the first block, and the RoPE table (None without RoPE)."""
        vit = self.vit
        if is_eva(vit):
            return eva_embed(vit, x)
        x = self._add_positions(vit.patch_embed(x))
        x = vit.patch_drop(x)
        out: Tensor = vit.norm_pre(x)
        return out, None

    @staticmethod
    def _block(block: nn.Module, x: Tensor, rope: Tensor | None) -> Tensor:
        out: Tensor = block(x) if rope is None else block(x, rope=rope)
        return out

    def _blocks(self, x: Tensor, rope: Tensor | None) -> Tensor:
        for block in self.vit.blocks:
            x = self._block(block, x, rope)
        return x

    def _add_positions(self, x: Tensor) -> Tensor:
        """Prefix tokens and positions: (B, h, w, D) patches -> (B, prefix + h * w, D) tokens.

        timm's ``_pos_embed`` with the positional table resampled by the family's rule. Like
        the references, the CLS token gets its position (stored in ``pos_embed`` or, for the
        timm layout with registers, folded into ``cls_token``) and registers get none.
        """
        vit = self.vit
        if vit.pos_embed is None or vit.cls_token is None:
            out: Tensor = vit._pos_embed(x)  # timm ViTs without these keep timm's own path
            return out
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        table = vit.pos_embed
        num_prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
        patches = resample_patch_pos_embed(
            table[:, num_prefix:], (h, w), interp=self.config.pos_embed_interp
        )
        prefix = [vit.cls_token.expand(b, -1, -1)]
        if vit.reg_token is not None:
            prefix.append(vit.reg_token.expand(b, -1, -1))
        if vit.no_embed_class:
            x = torch.cat([*prefix, x + patches], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + torch.cat([table[:, :num_prefix], patches], dim=1)
        out = vit.pos_drop(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """CLS token after the final norm.

        Args:
            x: (B, 3, H, W) normalised images, H and W multiples of the patch size.

        Returns:
            (B, D) CLS tokens.
        """
        self._check_input(x)
        tokens: Tensor = self.vit.norm(self._blocks(*self._embed(x)))
        return tokens[:, 0]

    def forward_features(self, x: Tensor, *, n_last_blocks: int = 0) -> Features:
        """Every token group of one forward pass.

        Args:
            x: (B, 3, H, W) normalised images, H and W multiples of the patch size.
            n_last_blocks: Also return the CLS tokens of the last n blocks, each passed
                through the final norm (DINO's linear-evaluation feature uses n = 4).

        Returns:
            :class:`Features` with (B, D) cls, (B, N, D) patch tokens, (B, R, D) registers
            and, when asked, (B, n, D) block CLS tokens.
        """
        grid = self._check_input(x)
        blocks = self.vit.blocks
        if not 0 <= n_last_blocks <= len(blocks):
            raise ValueError(f"n_last_blocks must be in [0, {len(blocks)}], got {n_last_blocks}")
        h, rope = self._embed(x)
        collected: list[Tensor] = []
        first_kept = len(blocks) - n_last_blocks
        for i, block in enumerate(blocks):
            h = self._block(block, h, rope)
            if i >= first_kept:
                collected.append(self.vit.norm(h[:, :1]))
        h = self.vit.norm(h)
        k = self.num_prefix_tokens
        return Features(
            cls=h[:, 0],
            patch_tokens=h[:, k:],
            register_tokens=h[:, 1:k],
            block_cls=torch.cat(collected, dim=1) if collected else None,
            grid=grid,
        )

    def get_last_selfattention(self, x: Tensor) -> Tensor:
        """Softmax self-attention of the last block, as DINO's attention maps use it.

        Args:
            x: (B, 3, H, W) normalised images, H and W multiples of the patch size.

        Returns:
            (B, heads, T, T) attention weights, T = prefix tokens + patches; rows sum to 1.
            Row 0 is the CLS query.
        """
        self._check_input(x)
        blocks = self.vit.blocks
        h, rope = self._embed(x)
        for block in blocks[:-1]:
            h = self._block(block, h, rope)
        last = blocks[-1]
        if rope is not None:
            return eva_attention(last, h, rope)
        attn = last.attn
        y = last.norm1(h)
        b, t, c = y.shape
        qkv = attn.qkv(y).reshape(b, t, 3, attn.num_heads, c // attn.num_heads)
        q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        weights: Tensor = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return weights
