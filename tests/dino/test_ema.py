"""Tests for dinokit.dino.ema (reference: facebookresearch/dino main_dino.py teacher EMA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from timm.layers.drop import DropPath
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from dinokit.dino.ema import disable_drop_path, make_teacher, unwrap_model, update_teacher
from dinokit.dino.head import DINOHead

EMBED_DIM = 32


class _StudentNet(nn.Module):
    """Backbone + head, as the trainer wires them."""

    def __init__(self, drop_path_rate: float = 0.2) -> None:
        super().__init__()
        self.backbone = VisionTransformer(
            img_size=32,
            patch_size=16,
            embed_dim=EMBED_DIM,
            depth=2,
            num_heads=2,
            num_classes=0,
            drop_path_rate=drop_path_rate,
        )
        self.head = DINOHead(EMBED_DIM, 16, hidden_dim=32, bottleneck_dim=8)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.backbone(x))
        return out


@pytest.fixture
def student() -> _StudentNet:
    torch.manual_seed(0)
    return _StudentNet()


def _drop_paths(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, DropPath)]


def test_teacher_is_exact_copy(student: _StudentNet) -> None:
    teacher = make_teacher(student)
    s_sd, t_sd = student.state_dict(), teacher.state_dict()
    assert s_sd.keys() == t_sd.keys()
    assert any(k.startswith("head.") for k in t_sd)
    for key in s_sd:
        assert torch.equal(s_sd[key], t_sd[key]), key
        assert s_sd[key].data_ptr() != t_sd[key].data_ptr(), key  # a copy, not shared
    x = torch.randn(2, 3, 32, 32)
    student.eval()
    teacher.eval()
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), student(x), rtol=0, atol=0)


def test_teacher_has_no_grads_and_student_is_untouched(student: _StudentNet) -> None:
    trainable_before = [n for n, p in student.named_parameters() if p.requires_grad]
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert [n for n, p in student.named_parameters() if p.requires_grad] == trainable_before
    student(torch.randn(1, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_teacher_has_no_drop_path(student: _StudentNet) -> None:
    # timm's per-block rates are linspace(0, rate, depth): block 0 has none, block 1 has 2.
    assert len(_drop_paths(student)) == 2
    teacher = make_teacher(student)
    assert _drop_paths(teacher) == []
    assert len(_drop_paths(student)) == 2
    block = teacher.backbone.blocks[1]
    assert isinstance(block.drop_path1, nn.Identity)
    assert isinstance(block.drop_path2, nn.Identity)
    # Without stochastic depth the teacher is deterministic even in train mode.
    teacher.train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), teacher(x), rtol=0, atol=0)
    kept = make_teacher(student, drop_path=True)
    assert len(_drop_paths(kept)) == 2


def test_disable_drop_path_other_implementations() -> None:
    class DropPath(nn.Module):  # e.g. DINO's own vision_transformer.DropPath
        drop_prob = 0.1

    class Dinov2Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sample_drop_ratio = 0.3
            self.drop_path = DropPath()

    model = nn.Sequential(Dinov2Block(), nn.Linear(2, 2))
    assert disable_drop_path(model) == 2
    assert isinstance(model[0].drop_path, nn.Identity)
    assert model[0].sample_drop_ratio == 0.0
    assert disable_drop_path(model) == 0


def test_ema_by_hand(student: _StudentNet) -> None:
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    update_teacher(student, teacher, 0.9)
    s_params = dict(student.named_parameters())
    for name, param in teacher.named_parameters():
        expected = 0.9 * before[name] + 0.1 * s_params[name]
        torch.testing.assert_close(param, expected, rtol=1e-6, atol=1e-6)
        assert not param.requires_grad


def test_momentum_one_leaves_teacher_unchanged(student: _StudentNet) -> None:
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    update_teacher(student, teacher, 1.0)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key])


def test_momentum_zero_copies_student(student: _StudentNet) -> None:
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(2.0)
    update_teacher(student, teacher, 0.0)
    for (_, s), (_, t) in zip(student.named_parameters(), teacher.named_parameters(), strict=True):
        assert torch.equal(s, t)


def test_invalid_momentum_and_mismatch(student: _StudentNet) -> None:
    teacher = make_teacher(student)
    with pytest.raises(ValueError, match="momentum"):
        update_teacher(student, teacher, 1.5)
    with pytest.raises(ValueError, match="only in student"):
        update_teacher(student, teacher.backbone, 0.9)


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)
def test_ddp_wrapped_student(student: _StudentNet, tmp_path: Path) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = nn.parallel.DistributedDataParallel(student)
        assert unwrap_model(ddp) is student
        teacher = make_teacher(ddp)
        assert not isinstance(teacher, nn.parallel.DistributedDataParallel)
        assert teacher.state_dict().keys() == student.state_dict().keys()
        with torch.no_grad():
            for p in student.parameters():
                p.add_(1.0)
        before = {n: p.clone() for n, p in teacher.named_parameters()}
        update_teacher(ddp, teacher, 0.5)
        for name, param in teacher.named_parameters():
            torch.testing.assert_close(param, before[name] + 0.5)
    finally:
        dist.destroy_process_group()
