"""Tests for dinokit.training.optim (reference: facebookresearch/dino utils.get_params_groups and
utils.clip_gradients; layer decay as in facebookresearch/dinov2 get_vit_lr_decay_rate)."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from dinokit.dino.head import DINOHead
from dinokit.models import create_backbone
from dinokit.training.optim import (
    apply_schedules,
    build_adamw,
    clip_gradients,
    freeze_backbone,
    param_groups,
    vit_layer_id,
)

DEPTH = 4  # vit_test


class _Student(nn.Module):
    def __init__(self, backbone: nn.Module, dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = DINOHead(dim, 32, hidden_dim=16, bottleneck_dim=8)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.backbone(x))
        return out


@pytest.fixture
def student() -> _Student:
    torch.manual_seed(0)
    return _Student(create_backbone("vit_test", weights="none"), 64)


def _reference_groups(model: nn.Module) -> tuple[set[str], set[str]]:
    """Literal reference ``get_params_groups`` (names instead of tensors)."""
    regularized, not_regularized = set(), set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.add(name)
        else:
            regularized.add(name)
    return regularized, not_regularized


def _names_by_group(model: nn.Module, groups: list[dict]) -> dict[str, dict]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g for g in groups for p in g["params"]}


def test_weight_decay_split_matches_reference(student: _Student) -> None:
    groups = param_groups(student)
    by_name = _names_by_group(student, groups)
    decay, no_decay = _reference_groups(student)
    assert {n for n, g in by_name.items() if g["weight_decay_scale"] == 1.0} == decay
    assert {n for n, g in by_name.items() if g["weight_decay_scale"] == 0.0} == no_decay
    assert "backbone.vit.cls_token" in decay and "backbone.vit.pos_embed" in decay  # 3-D
    assert "backbone.vit.blocks.0.norm1.weight" in no_decay
    # The head's frozen weight-norm g is never in a group; v is.
    assert "head.last_layer.parametrizations.weight.original0" not in by_name
    assert "head.last_layer.parametrizations.weight.original1" in by_name
    assert all(g["lr_scale"] == 1.0 for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(decay) + len(no_decay)


def test_layer_ids() -> None:
    assert vit_layer_id("patch_embed.proj.weight", 12) == 0
    for name in ("cls_token", "pos_embed", "reg_token", "norm_pre.weight"):
        assert vit_layer_id(name, 12) == 0
    assert vit_layer_id("blocks.0.attn.qkv.weight", 12) == 1
    assert vit_layer_id("blocks.11.ls2.gamma", 12) == 12
    assert vit_layer_id("norm.weight", 12) == 13


def test_layer_decay_scales(student: _Student) -> None:
    d = 0.5
    by_name = _names_by_group(
        student, param_groups(student, layer_decay=d, backbone_lr_scale=0.1, head_lr_scale=2.0)
    )
    for name, group in by_name.items():
        if name.startswith("head."):
            expected = 2.0
        elif ".blocks." in name:
            i = int(name.split(".")[3])
            expected = 0.1 * d ** (DEPTH - i)
        elif name.startswith("backbone.vit.norm."):
            expected = 0.1
        else:  # embedding stage
            expected = 0.1 * d ** (DEPTH + 1)
        assert group["lr_scale"] == pytest.approx(expected), name


def test_registers_and_layerscale_in_timm_vit() -> None:
    vit = VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=0,
        reg_tokens=1, init_values=1e-5, no_embed_class=True,
    )  # fmt: skip
    model = _Student(vit, 16)  # a bare timm ViT as the backbone also works
    by_name = _names_by_group(model, param_groups(model, layer_decay=0.5, freeze_blocks=1))
    assert "backbone.reg_token" not in by_name and "backbone.blocks.0.ls1.gamma" not in by_name
    assert not model.backbone.reg_token.requires_grad
    gamma = by_name["backbone.blocks.1.ls1.gamma"]
    assert gamma["weight_decay_scale"] == 0.0 and gamma["lr_scale"] == pytest.approx(0.5)


def test_freeze_blocks(student: _Student) -> None:
    by_name = _names_by_group(student, param_groups(student, freeze_blocks=2))
    vit = student.backbone.vit
    for p in (vit.cls_token, vit.pos_embed, *vit.patch_embed.parameters()):
        assert not p.requires_grad
    for i in range(DEPTH):
        assert all(p.requires_grad == (i >= 2) for p in vit.blocks[i].parameters())
    assert not any(
        n.startswith(("backbone.vit.blocks.0.", "backbone.vit.blocks.1.")) for n in by_name
    )
    assert "backbone.vit.blocks.2.attn.qkv.weight" in by_name
    assert "backbone.vit.norm.weight" in by_name
    with pytest.raises(ValueError, match="freeze_blocks"):
        param_groups(student, freeze_blocks=DEPTH + 1)


def test_head_warmup_freeze_and_unfreeze(student: _Student) -> None:
    groups = param_groups(student, freeze_blocks=1)
    optimizer = build_adamw(groups, device=torch.device("cpu"))
    apply_schedules(optimizer, lr=1e-2, weight_decay=0.04)
    assert freeze_backbone(student, True, freeze_blocks=1) > 0
    assert not any(p.requires_grad for p in student.backbone.parameters())
    before = {n: p.detach().clone() for n, p in student.backbone.named_parameters()}
    head_before = student.head.mlp[0].weight.detach().clone()
    x = torch.randn(2, 3, 32, 32)
    student(x).square().mean().backward()
    optimizer.step()
    # Frozen backbone params have grad None: AdamW skips them (no update, no weight decay).
    for n, p in student.backbone.named_parameters():
        assert p.grad is None and torch.equal(p, before[n]), n
    assert not torch.equal(student.head.mlp[0].weight, head_before)

    freeze_backbone(student, False, freeze_blocks=1)
    vit = student.backbone.vit
    assert not vit.cls_token.requires_grad and not any(
        p.requires_grad for p in vit.blocks[0].parameters()
    )
    assert all(p.requires_grad for p in vit.blocks[1].parameters())
    optimizer.zero_grad(set_to_none=True)
    student(x).square().mean().backward()
    optimizer.step()
    assert not torch.equal(vit.blocks[1].attn.qkv.weight, before["vit.blocks.1.attn.qkv.weight"])
    assert torch.equal(vit.blocks[0].attn.qkv.weight, before["vit.blocks.0.attn.qkv.weight"])
    assert student.head.last_layer_g.requires_grad is False  # head untouched


def test_apply_schedules(student: _Student) -> None:
    groups = param_groups(student, layer_decay=0.5)
    optimizer = torch.optim.AdamW(groups)
    apply_schedules(optimizer, lr=0.1, weight_decay=0.04)
    for g in optimizer.param_groups:
        assert g["lr"] == pytest.approx(0.1 * g["lr_scale"])
        assert g["weight_decay"] == pytest.approx(0.04 * g["weight_decay_scale"])
    bare = torch.optim.AdamW(student.parameters())
    with pytest.raises(KeyError, match="param_groups"):
        apply_schedules(bare, lr=0.1, weight_decay=0.04)


def _reference_clip(model: nn.Module, clip: float) -> list[float]:
    """Literal reference ``utils.clip_gradients``."""
    norms = []
    for _, p in model.named_parameters():
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            norms.append(param_norm.item())
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)
    return norms


@pytest.mark.parametrize("clip", [0.05, 3.0, 1e6])
def test_clip_gradients_matches_reference(student: _Student, clip: float) -> None:
    x = torch.randn(3, 3, 32, 32)
    (student(x) * 100).square().mean().backward()
    student.backbone.vit.blocks[3].mlp.fc1.weight.grad = None  # skipped params
    reference = _Student(create_backbone("vit_test", weights="none"), 64)
    for p_ref, p in zip(reference.parameters(), student.parameters(), strict=True):
        p_ref.grad = None if p.grad is None else p.grad.clone()

    norms = clip_gradients(student, clip)
    ref_norms = _reference_clip(reference, clip)
    assert norms == pytest.approx(ref_norms, rel=1e-5)
    for p_ref, p in zip(reference.parameters(), student.parameters(), strict=True):
        if p.grad is None:
            assert p_ref.grad is None
        else:
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-5, atol=1e-9)
            assert p.grad.norm() <= clip * (1 + 1e-5)
    if clip == 1e6:  # nothing clipped: gradients bit-identical
        assert all(
            torch.equal(p.grad, q.grad)
            for p, q in zip(student.parameters(), reference.parameters(), strict=True)
            if p.grad is not None
        )


def test_requires_backbone() -> None:
    with pytest.raises(ValueError, match="backbone"):
        param_groups(nn.Linear(2, 2))
