"""Describe any timm Vision Transformer as a :class:`BackboneConfig` (``timm:<name>``)."""

from __future__ import annotations

from typing import Any

import torch

from .config import BackboneConfig, Preprocessing, WeightsSource


def timm_backbone_config(timm_name: str) -> BackboneConfig:
    """Read a timm ViT's architecture and pretrained config without allocating weights.

    Raises:
        ValueError: the name is not a timm model, or not a plain ViT.
    """
    import timm
    from timm.models.vision_transformer import VisionTransformer

    if not timm.is_model(timm_name):
        raise ValueError(
            f"unknown timm model {timm_name!r}; list them with timm.list_models('vit_*')"
        )
    with torch.device("meta"):
        created = timm.create_model(timm_name, pretrained=False, num_classes=0)
    if not isinstance(created, VisionTransformer):
        raise ValueError(
            f"timm:{timm_name} is a {type(created).__name__}, not a VisionTransformer; "
            "dinokit supports timm's ViT family"
        )
    model: Any = created
    cfg: dict[str, Any] = model.pretrained_cfg or {}
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    interpolation = str(cfg.get("interpolation", "bicubic"))
    hf_repo = cfg.get("hf_hub_id")
    block = model.blocks[0]
    mlp_hidden = block.mlp.fc1.out_features
    return BackboneConfig(
        name=f"timm:{timm_name}",
        family="timm",
        embed_dim=model.embed_dim,
        depth=len(model.blocks),
        num_heads=block.attn.num_heads,
        patch_size=int(model.patch_embed.patch_size[0]),
        pos_embed_size=int(model.patch_embed.img_size[0]),
        mlp_ratio=mlp_hidden / model.embed_dim,
        reg_tokens=int(model.num_reg_tokens),
        preprocessing=Preprocessing(
            size=size,
            mean=tuple(cfg.get("mean", Preprocessing.mean)),
            std=tuple(cfg.get("std", Preprocessing.std)),
            interpolation=interpolation,
            crop_pct=float(cfg.get("crop_pct", 0.875)),
        ),
        weights=WeightsSource(
            file_name="model.safetensors",
            url=f"https://huggingface.co/{hf_repo}" if hf_repo else "",
            hf_repo=hf_repo,
            licence=str(cfg.get("license", "see the timm model card")),
        )
        if hf_repo
        else None,
        timm_name=timm_name,
        description=f"timm {timm_name}",
    )
