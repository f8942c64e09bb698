"""The Backbone API: token groups, block CLS tokens, attention maps, input sizes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from dinokit.models.backbone import Backbone
from dinokit.models.registry import _REGISTRY
from tests.models.checkpoints import TINY_DINOV2_REG, DinoV2File, images, random_backbone


@pytest.fixture
def tiny_reg(monkeypatch: pytest.MonkeyPatch) -> Backbone:
    monkeypatch.setitem(_REGISTRY, TINY_DINOV2_REG.name, TINY_DINOV2_REG)
    return random_backbone(TINY_DINOV2_REG.name, seed=1)


def test_forward_is_the_cls_of_forward_features(vit_test: Backbone) -> None:
    x = images(2, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(vit_test(x), vit_test.forward_features(x).cls, rtol=0, atol=0)


@pytest.mark.parametrize("size", [(64, 64), (96, 96), (48, 80), (16, 8)])
def test_token_shapes_at_any_multiple_of_the_patch(
    vit_test: Backbone, size: tuple[int, int]
) -> None:
    h, w = size
    x = images(3, h, w)
    with torch.inference_mode():
        features = vit_test.forward_features(x)
    assert features.cls.shape == (3, 64)
    assert features.grid == (h // 8, w // 8)
    assert features.patch_tokens.shape == (3, (h // 8) * (w // 8), 64)
    assert features.register_tokens.shape == (3, 0, 64)
    assert features.block_cls is None
    assert torch.isfinite(features.patch_tokens).all()


def test_register_tokens_of_reg_variants(tiny_reg: Backbone) -> None:
    x = images(2, 24, 40)
    with torch.inference_mode():
        features = tiny_reg.forward_features(x)
    assert features.register_tokens.shape == (2, 4, 64)
    assert features.patch_tokens.shape == (2, 3 * 5, 64)
    assert tiny_reg.num_prefix_tokens == 5


@pytest.mark.parametrize("name", ["vit_test", "reg"])
def test_last_block_cls_is_the_cls(vit_test: Backbone, tiny_reg: Backbone, name: str) -> None:
    backbone = vit_test if name == "vit_test" else tiny_reg
    depth = len(backbone.vit.blocks)
    x = images(2, 32, 48)
    with torch.inference_mode():
        features = backbone.forward_features(x, n_last_blocks=min(4, depth))
    assert features.block_cls is not None
    assert features.block_cls.shape == (2, min(4, depth), 64)
    torch.testing.assert_close(features.block_cls[:, -1], features.cls, rtol=0, atol=0)
    # Earlier blocks' CLS tokens are different features.
    assert not torch.allclose(features.block_cls[:, 0], features.cls)


def test_n_last_blocks_out_of_range(vit_test: Backbone) -> None:
    with pytest.raises(ValueError, match="n_last_blocks"):
        vit_test.forward_features(images(1, 64, 64), n_last_blocks=5)


def _check_attention(backbone: Backbone, x: Tensor) -> None:
    blocks = backbone.vit.blocks
    captured: dict[str, Tensor] = {}
    hook = blocks[-1].register_forward_pre_hook(lambda _m, args: captured.update(h=args[0]))
    try:
        with torch.inference_mode():
            backbone(x)
            attn = backbone.get_last_selfattention(x)
    finally:
        hook.remove()
    b, heads = x.shape[0], blocks[-1].attn.num_heads
    grid = (x.shape[-2] // backbone.patch_size) * (x.shape[-1] // backbone.patch_size)
    tokens = backbone.num_prefix_tokens + grid
    assert attn.shape == (b, heads, tokens, tokens)
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(b, heads, tokens), rtol=0, atol=1e-5)

    # The weights are the ones the block uses: attn @ v, then proj, gives the block's output.
    block, h = blocks[-1], captured["h"]
    with torch.inference_mode():
        y = block.norm1(h)
        dim = y.shape[-1]
        qkv = block.attn.qkv(y).reshape(b, tokens, 3, heads, dim // heads)
        v = qkv.permute(2, 0, 3, 1, 4)[2]
        by_hand = block.attn.proj((attn @ v).transpose(1, 2).reshape(b, tokens, dim))
        torch.testing.assert_close(by_hand, block.attn(y), rtol=1e-5, atol=1e-5)


def test_last_selfattention(vit_test: Backbone) -> None:
    _check_attention(vit_test, images(2, 48, 80))


def test_last_selfattention_with_registers(tiny_reg: Backbone) -> None:
    _check_attention(tiny_reg, images(2, 32, 24))


@pytest.mark.parametrize("size", [(65, 64), (64, 60), (7, 7)])
def test_non_multiple_sizes_are_refused(vit_test: Backbone, size: tuple[int, int]) -> None:
    x = images(1, *size)
    for call in (vit_test, vit_test.forward_features, vit_test.get_last_selfattention):
        with pytest.raises(ValueError, match="not a multiple of the patch size 8"):
            call(x)


def test_wrong_input_rank_is_refused(vit_test: Backbone) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        vit_test(torch.zeros(3, 64, 64))


def test_vit_test_is_tiny_and_runs_in_eval(vit_test: Backbone) -> None:
    assert sum(p.numel() for p in vit_test.parameters()) < 1_000_000
    assert not vit_test.training
    with torch.inference_mode():
        out64, out96 = vit_test(images(2, 64, 64)), vit_test(images(2, 96, 96))
    assert out64.shape == out96.shape == (2, 64)
    assert torch.isfinite(out64).all() and torch.isfinite(out96).all()


def test_eval_is_deterministic_and_batch_independent(vit_test: Backbone) -> None:
    x = images(3, 64, 64)
    with torch.inference_mode():
        whole = vit_test(x)
        one = vit_test(x[1:2])
    torch.testing.assert_close(whole[1:2], one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [224, 518])
def test_dinov2_vits14_runs_at_224_and_518(dinov2_vits14_file: DinoV2File, size: int) -> None:
    backbone = dinov2_vits14_file.source
    with torch.inference_mode():
        features = backbone.forward_features(images(1, size, size))
    side = size // 14
    assert features.patch_tokens.shape == (1, side * side, 384)
    assert torch.isfinite(features.cls).all()
