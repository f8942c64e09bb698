"""The registry of named backbones: DINO v1, DINOv2 (+ registers), DINOv3, any timm ViT, test ViTs.

Names and weight files follow the official torch.hub entry points of
facebookresearch/dino, facebookresearch/dinov2 and facebookresearch/dinov3.
"""

from __future__ import annotations

import logging

from .config import BackboneConfig, Preprocessing, WeightsSource

logger = logging.getLogger(__name__)

TIMM_PREFIX = "timm:"
_DINO_URL = "https://dl.fbaipublicfiles.com/dino"
_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"
_DINOV3_URL = "https://dl.fbaipublicfiles.com/dinov3"
DINOV3_LICENCE = "DINOv3 License"
DINOV3_OBTAIN = (
    "the DINOv3 weights are distributed through a licence form: request access from the link "
    "in the facebookresearch/dinov3 README (https://ai.meta.com/resources/models-and-libraries/"
    "dinov3-downloads/); the e-mailed download links give this file"
)
# Satellite statistics of the SAT-493M models (facebookresearch/dinov3 README, make_transform).
SAT_MEAN: tuple[float, float, float] = (0.430, 0.411, 0.296)
SAT_STD: tuple[float, float, float] = (0.213, 0.156, 0.143)
_REGISTRY: dict[str, BackboneConfig] = {}


def register(config: BackboneConfig) -> BackboneConfig:
    """Add a backbone to the registry (names are unique)."""
    if config.name in _REGISTRY:
        raise ValueError(f"backbone {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


def list_backbones() -> list[str]:
    """Names of every registered backbone, in registration order.

    Any timm ViT is also available as ``timm:<timm model name>``.
    """
    return list(_REGISTRY)


def get_config(name: str) -> BackboneConfig:
    """The config of a registered backbone or of ``timm:<name>``.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    if name.startswith(TIMM_PREFIX):
        from .timm_config import timm_backbone_config

        return timm_backbone_config(name[len(TIMM_PREFIX) :])
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(_REGISTRY)
        raise ValueError(
            f"unknown backbone {name!r}; valid names: {valid}, or timm:<timm ViT name>"
        ) from None


def _dino(name: str, dim: int, heads: int, patch: int, file_stem: str, timm_id: str) -> None:
    register(
        BackboneConfig(
            name=name,
            family="dino",
            embed_dim=dim,
            depth=12,
            num_heads=heads,
            patch_size=patch,
            pos_embed_size=224,
            # facebookresearch/dino interpolate_pos_encoding: bicubic, scale (n + 0.1) / 14.
            pos_embed_interp="offset",
            weights=WeightsSource(
                file_name=f"{file_stem}.pth",
                url=f"{_DINO_URL}/{file_stem}/{file_stem}.pth",
                hf_repo=f"timm/{timm_id}",
            ),
            description="DINO v1 (Caron et al. 2021), ImageNet-1k self-supervised",
        )
    )


def _dinov2(size: str, dim: int, depth: int, heads: int, reg: bool) -> None:
    suffix = "_reg" if reg else ""
    timm_size = {"s": "small", "b": "base", "l": "large", "g": "giant"}[size]
    stem = f"dinov2_vit{size}14{'_reg4' if reg else ''}_pretrain"
    register(
        BackboneConfig(
            name=f"dinov2_vit{size}14{suffix}",
            family="dinov2",
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            patch_size=14,
            # The official DINOv2 positional embedding has 1 + 37 * 37 positions (518 px).
            pos_embed_size=518,
            # g/14 uses a fused SwiGLU MLP whose hidden width is 4096 = 8/3 * 1536 rounded.
            mlp="swiglu" if size == "g" else "mlp",
            layer_scale=1e-5,
            reg_tokens=4 if reg else 0,
            # dinov2/hub/backbones.py: interpolate_offset=0.1, interpolate_antialias=False, and
            # for the _reg models interpolate_offset=0.0, interpolate_antialias=True.
            pos_embed_interp="antialias" if reg else "offset",
            weights=WeightsSource(
                file_name=f"{stem}.pth",
                url=f"{_DINOV2_URL}/dinov2_vit{size}14/{stem}.pth",
                hf_repo=f"timm/vit_{timm_size}_patch14{'_reg4' if reg else ''}_dinov2.lvd142m",
            ),
            description="DINOv2 (Oquab et al. 2023), LVD-142M self-supervised"
            + (", 4 registers (Darcet et al. 2024)" if reg else ""),
        )
    )


def _dinov3(
    arch: str,
    dim: int,
    depth: int,
    heads: int,
    *,
    ffn_ratio: float,
    swiglu_align: int,
    file_hash: str,
    timm_id: str | None,
    sat: bool = False,
) -> None:
    """One ``dinov3/hub/backbones.py`` entry point (``dinov3_<arch>``, LVD-1689M or SAT-493M)."""
    data = "sat493m" if sat else "lvd1689m"
    stem = f"dinov3_{arch}_pretrain_{data}-{file_hash}"
    preprocessing = Preprocessing(mean=SAT_MEAN, std=SAT_STD) if sat else Preprocessing()
    register(
        BackboneConfig(
            name=f"dinov3_{arch}{'_sat' if sat else ''}",
            family="dinov3",
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            patch_size=16,
            mlp_ratio=ffn_ratio,
            mlp="swiglu" if swiglu_align else "mlp",
            swiglu_align=swiglu_align,
            layer_scale=1e-5,
            reg_tokens=4,  # n_storage_tokens=4 in every hub entry point
            preprocessing=preprocessing,
            weights=WeightsSource(
                file_name=f"{stem}.pth",
                url=f"{_DINOV3_URL}/dinov3_{arch}/{stem}.pth",
                hf_repo=f"timm/{timm_id}.{data}" if timm_id else None,
                licence=DINOV3_LICENCE,
                obtain=DINOV3_OBTAIN,
            ),
            timm_name=timm_id,
            description=f"DINOv3 (Simeoni et al. 2025), {'SAT-493M' if sat else 'LVD-1689M'}"
            " self-supervised, RoPE, 4 registers; DINOv3 License",
        )
    )


_dino("dino_vits16", 384, 6, 16, "dino_deitsmall16_pretrain", "vit_small_patch16_224.dino")
_dino("dino_vits8", 384, 6, 8, "dino_deitsmall8_pretrain", "vit_small_patch8_224.dino")
_dino("dino_vitb16", 768, 12, 16, "dino_vitbase16_pretrain", "vit_base_patch16_224.dino")
_dino("dino_vitb8", 768, 12, 8, "dino_vitbase8_pretrain", "vit_base_patch8_224.dino")
for _reg in (False, True):
    _dinov2("s", 384, 12, 6, _reg)
    _dinov2("b", 768, 12, 12, _reg)
    _dinov2("l", 1024, 24, 16, _reg)
    _dinov2("g", 1536, 40, 24, _reg)

# dinov3/hub/backbones.py: the ViTs, their ffn_ratio / ffn_layer ("swiglu" aligns to 8,
# "swiglu64" to 64) and the hashes in their file names. timm names: timm/models/eva.py.
_dinov3(
    "vits16",
    384,
    12,
    6,
    ffn_ratio=4,
    swiglu_align=0,
    file_hash="08c60483",
    timm_id="vit_small_patch16_dinov3",
)
_dinov3(
    "vits16plus",
    384,
    12,
    6,
    ffn_ratio=6,
    swiglu_align=8,
    file_hash="4057cbaa",
    timm_id="vit_small_plus_patch16_dinov3",
)
_dinov3(
    "vitb16",
    768,
    12,
    12,
    ffn_ratio=4,
    swiglu_align=0,
    file_hash="73cec8be",
    timm_id="vit_base_patch16_dinov3",
)
_dinov3(
    "vitl16",
    1024,
    24,
    16,
    ffn_ratio=4,
    swiglu_align=0,
    file_hash="8aa4cbdd",
    timm_id="vit_large_patch16_dinov3",
)
_dinov3(
    "vitl16plus", 1024, 24, 16, ffn_ratio=6, swiglu_align=8, file_hash="46503df0", timm_id=None
)  # not in timm
_dinov3(
    "vith16plus",
    1280,
    32,
    20,
    ffn_ratio=6,
    swiglu_align=8,
    file_hash="7c1da9a5",
    timm_id="vit_huge_plus_patch16_dinov3",
)
_dinov3(
    "vit7b16",
    4096,
    40,
    32,
    ffn_ratio=3,
    swiglu_align=64,
    file_hash="a955f4ea",
    timm_id="vit_7b_patch16_dinov3",
)
_dinov3(
    "vitl16",
    1024,
    24,
    16,
    ffn_ratio=4,
    swiglu_align=0,
    file_hash="eadcf0ff",
    timm_id="vit_large_patch16_dinov3",
    sat=True,
)
_dinov3(
    "vit7b16",
    4096,
    40,
    32,
    ffn_ratio=3,
    swiglu_align=64,
    file_hash="a6675841",
    timm_id="vit_7b_patch16_dinov3",
    sat=True,
)

# A tiny ViT (~0.2 M parameters) for tests and the offline demo; it has no official weights.
register(
    BackboneConfig(
        name="vit_test",
        family="test",
        embed_dim=64,
        depth=4,
        num_heads=4,
        patch_size=8,
        pos_embed_size=64,
        preprocessing=Preprocessing(size=64),
        description="tiny test ViT, random init (tests and demos)",
    )
)

# A tiny DINOv3-architecture ViT (RoPE, 4 registers, LayerScale, SwiGLU) for tests and demos.
register(
    BackboneConfig(
        name="dinov3_test",
        family="dinov3",
        embed_dim=64,
        depth=4,
        num_heads=4,
        patch_size=8,
        pos_embed_size=64,
        mlp_ratio=4,
        mlp="swiglu",
        swiglu_align=8,
        layer_scale=1e-5,
        reg_tokens=4,
        preprocessing=Preprocessing(size=64),
        description="tiny DINOv3-architecture ViT, random init (tests and demos)",
    )
)

# A small ViT for 32 px images (CIFAR-sized): ViT-Tiny width, 6 blocks, 4 px patches, so a
# 32 px image is 8 x 8 = 64 tokens. No official weights; for DINO runs from scratch on small images.
register(
    BackboneConfig(
        name="vit_small32",
        family="test",
        embed_dim=192,
        depth=6,
        num_heads=3,
        patch_size=4,
        pos_embed_size=32,
        preprocessing=Preprocessing(size=32),
        description="small ViT for 32 px images (192-d, 6 blocks, patch 4), random init",
    )
)
