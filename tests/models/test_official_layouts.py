"""Weight files in every official layout load through the public API and reproduce outputs.

Files are written by :mod:`tests.models.checkpoints` with random weights and the exact key
names, prefixes and nesting of facebookresearch/dino, facebookresearch/dinov2 and timm/HF.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import dinokit
from dinokit.dino.head import DINOHead, convert_legacy_head_state_dict
from dinokit.models.backbone import Backbone
from dinokit.models.registry import _REGISTRY
from dinokit.models.weights import read_weights
from tests.models.checkpoints import (
    HEAD_OUT_DIM,
    TINY_DINOV2_REG,
    TINY_DINOV2_SWIGLU,
    DinoV1Files,
    DinoV2File,
    dino_v1_backbone_keys,
    dinov2_official_keys,
    fail_on_network,
    images,
    random_backbone,
    write_dinov2_pth,
)

# The native size, then a non-native one (not square: pos_embed interpolation on both axes).
VITS16_SIZES = [(224, 224), (48, 80)]
VITS14_SIZES = [(224, 224), (98, 70)]


def assert_same_outputs(loaded: Backbone, source: Backbone, sizes: list[tuple[int, int]]) -> None:
    """CLS and patch tokens of ``loaded`` equal those of ``source`` at every size."""
    assert not loaded.training
    for seed, (h, w) in enumerate(sizes):
        x = images(1, h, w, seed=seed)
        with torch.inference_mode():
            got, want = loaded.forward_features(x), source.forward_features(x)
        torch.testing.assert_close(got.cls, want.cls, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.patch_tokens, want.patch_tokens, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.register_tokens, want.register_tokens, rtol=1e-5, atol=1e-5)


# --- DINO v1 --------------------------------------------------------------------------------


def test_dino_backbone_file_has_the_official_keys(dino_vits16_files: DinoV1Files) -> None:
    state = torch.load(dino_vits16_files.backbone_pth, weights_only=True)
    assert set(state) == dino_v1_backbone_keys(12)
    assert state["pos_embed"].shape == (1, 197, 384)


def test_dino_backbone_pth_by_name(
    dino_vits16_files: DinoV1Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An explicit file needs neither a cache nor the network.
    monkeypatch.delenv("DINOKIT_OFFLINE")
    fail_on_network(monkeypatch)
    loaded = dinokit.create_backbone("dino_vits16", weights=dino_vits16_files.backbone_pth)
    assert loaded.source == str(dino_vits16_files.backbone_pth)
    assert read_weights(dino_vits16_files.backbone_pth).layout == "dino-backbone"
    assert_same_outputs(loaded.eval(), dino_vits16_files.teacher, VITS16_SIZES)


def test_load_infers_dino_vits16_from_the_tensors(dino_vits16_files: DinoV1Files) -> None:
    loaded = dinokit.load(dino_vits16_files.backbone_pth)
    assert loaded.config.name == "dino_vits16"
    assert_same_outputs(loaded, dino_vits16_files.teacher, VITS16_SIZES[1:])


def test_full_checkpoint_layout(dino_vits16_files: DinoV1Files) -> None:
    ckpt = torch.load(dino_vits16_files.full.path, weights_only=False)
    assert set(ckpt) >= {"student", "teacher", "optimizer", "epoch", "args", "dino_loss"}
    backbone_keys = dino_v1_backbone_keys(12)
    head_keys = {f"mlp.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    head_keys |= {"last_layer.weight_g", "last_layer.weight_v"}
    assert set(ckpt["student"]) == {f"module.backbone.{k}" for k in backbone_keys} | {
        f"module.head.{k}" for k in head_keys
    }
    assert set(ckpt["teacher"]) == {f"backbone.{k}" for k in backbone_keys} | {
        f"head.{k}" for k in head_keys
    }
    assert ckpt["teacher"]["head.last_layer.weight_g"].shape == (HEAD_OUT_DIM, 1)
    assert ckpt["teacher"]["head.last_layer.weight_v"].shape == (HEAD_OUT_DIM, 256)
    assert not torch.equal(
        ckpt["teacher"]["backbone.cls_token"], ckpt["student"]["module.backbone.cls_token"]
    )


@pytest.mark.parametrize("branch", ["teacher", "student"])
def test_full_checkpoint_branches(dino_vits16_files: DinoV1Files, branch: str) -> None:
    files = dino_vits16_files
    source = files.teacher if branch == "teacher" else files.student
    by_name = dinokit.create_backbone("dino_vits16", weights=files.full.path, branch=branch)
    assert_same_outputs(by_name.eval(), source, VITS16_SIZES)
    # By path, the architecture is recognised; the teacher is the default branch.
    kwargs = {} if branch == "teacher" else {"branch": branch}
    by_path = dinokit.load(files.full.path, **kwargs)
    assert by_path.config.name == "dino_vits16"
    assert_same_outputs(by_path, source, VITS16_SIZES[1:])


def reference_dino_head(legacy: dict[str, Tensor], x: Tensor) -> Tensor:
    """The reference DINOHead forward, by hand from the checkpoint's own tensors."""
    h = F.gelu(F.linear(x, legacy["mlp.0.weight"], legacy["mlp.0.bias"]))
    h = F.gelu(F.linear(h, legacy["mlp.2.weight"], legacy["mlp.2.bias"]))
    z = F.normalize(F.linear(h, legacy["mlp.4.weight"], legacy["mlp.4.bias"]), dim=-1)
    v, g = legacy["last_layer.weight_v"], legacy["last_layer.weight_g"]
    return z @ (g * v / v.norm(dim=1, keepdim=True)).T


@pytest.mark.parametrize("branch", ["teacher", "student"])
def test_full_checkpoint_head_center_and_metadata(
    dino_vits16_files: DinoV1Files, branch: str
) -> None:
    full = dino_vits16_files.full
    weights = read_weights(full.path, branch=branch)
    assert weights.layout == "dino-full-checkpoint"
    assert weights.branch == branch
    assert set(weights.head) == {
        "mlp.0.weight",
        "mlp.0.bias",
        "mlp.2.weight",
        "mlp.2.bias",
        "mlp.4.weight",
        "mlp.4.bias",
        "last_layer.weight_g",
        "last_layer.weight_v",
    }
    assert weights.center is not None
    torch.testing.assert_close(weights.center, full.center, rtol=0, atol=0)
    assert weights.metadata["epoch"] == full.epoch
    assert weights.metadata["args"]["arch"] == "vit_small"
    assert weights.metadata["args"]["out_dim"] == HEAD_OUT_DIM
    json.dumps(weights.metadata)  # plain data: numpy scalars and the Namespace converted

    head = DINOHead(384, HEAD_OUT_DIM).eval()
    head.load_state_dict(convert_legacy_head_state_dict(weights.head), strict=True)
    x = torch.randn(5, 384, generator=torch.Generator().manual_seed(7))
    source_head = full.teacher_head if branch == "teacher" else full.student_head
    with torch.inference_mode():
        got = head(x)
        torch.testing.assert_close(got, reference_dino_head(weights.head, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got, source_head(x), rtol=1e-6, atol=1e-6)


# --- timm / Hugging Face ---------------------------------------------------------------------


def test_timm_safetensors(dino_vits16_files: DinoV1Files) -> None:
    assert read_weights(dino_vits16_files.safetensors).layout == "timm"
    loaded = dinokit.create_backbone("dino_vits16", weights=dino_vits16_files.safetensors)
    assert_same_outputs(loaded.eval(), dino_vits16_files.teacher, VITS16_SIZES)
    inferred = dinokit.load(dino_vits16_files.safetensors)
    assert inferred.config.name == "dino_vits16"


def test_hf_pytorch_model_bin(dino_vits16_files: DinoV1Files) -> None:
    assert read_weights(dino_vits16_files.pytorch_bin).layout == "timm"
    loaded = dinokit.create_backbone("dino_vits16", weights=dino_vits16_files.pytorch_bin)
    assert_same_outputs(loaded.eval(), dino_vits16_files.teacher, VITS16_SIZES[1:])


# --- DINOv2 ----------------------------------------------------------------------------------


def test_dinov2_file_has_the_official_keys(dinov2_vits14_file: DinoV2File) -> None:
    state = torch.load(dinov2_vits14_file.path, weights_only=True)
    assert set(state) == dinov2_official_keys(12, registers=False)
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert state["mask_token"].shape == (1, 384)


def test_dinov2_reg_file_has_the_official_keys(dinov2_vits14_reg_file: DinoV2File) -> None:
    state = torch.load(dinov2_vits14_reg_file.path, weights_only=True)
    assert set(state) == dinov2_official_keys(12, registers=True)
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert state["register_tokens"].shape == (1, 4, 384)


@pytest.mark.parametrize("reg", [False, True], ids=["plain", "reg4"])
def test_dinov2_hub_file(
    dinov2_vits14_file: DinoV2File, dinov2_vits14_reg_file: DinoV2File, reg: bool
) -> None:
    file = dinov2_vits14_reg_file if reg else dinov2_vits14_file
    name = "dinov2_vits14_reg" if reg else "dinov2_vits14"
    assert read_weights(file.path).layout == "dinov2"
    by_name = dinokit.create_backbone(name, weights=file.path)
    assert_same_outputs(by_name.eval(), file.source, VITS14_SIZES)
    by_path = dinokit.load(file.path)
    assert by_path.config.name == name
    assert_same_outputs(by_path, file.source, VITS14_SIZES[1:])


def dinov2_reference_forward(official: dict[str, Tensor], loaded: Backbone, x: Tensor) -> Tensor:
    """DINOv2's token assembly at the native grid, from the official tensors, then blocks.

    facebookresearch/dinov2 ``prepare_tokens_with_masks``: patch embed, prepend CLS, add the
    full ``pos_embed`` (CLS position included), then insert the registers after CLS.
    """
    p = loaded.patch_size
    tokens = F.conv2d(
        x, official["patch_embed.proj.weight"], official["patch_embed.proj.bias"], stride=p
    )
    tokens = tokens.flatten(2).transpose(1, 2)
    cls = official["cls_token"].expand(x.shape[0], -1, -1)
    tokens = torch.cat([cls, tokens], dim=1) + official["pos_embed"]
    if "register_tokens" in official:
        regs = official["register_tokens"].expand(x.shape[0], -1, -1)
        tokens = torch.cat([tokens[:, :1], regs, tokens[:, 1:]], dim=1)
    out: Tensor = loaded.vit.norm(loaded.vit.blocks(tokens))
    return out


def test_dinov2_registers_match_the_reference_token_layout(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setitem(_REGISTRY, TINY_DINOV2_REG.name, TINY_DINOV2_REG)
    source = random_backbone(TINY_DINOV2_REG.name, seed=4)
    path = tmp_path / "dinov2_tiny_reg4.pth"
    official = write_dinov2_pth(path, source.vit, seed=4)
    loaded = dinokit.load(path)
    assert loaded.config == TINY_DINOV2_REG
    x = images(2, 32, 32)
    with torch.inference_mode():
        features = loaded.forward_features(x)
        reference = dinov2_reference_forward(official, loaded, x)
    torch.testing.assert_close(features.cls, reference[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features.register_tokens, reference[:, 1:5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features.patch_tokens, reference[:, 5:], rtol=1e-5, atol=1e-5)
    assert_same_outputs(loaded, source, [(32, 32), (48, 24)])


@pytest.mark.parametrize("block_chunks", [0, 2], ids=["flat", "chunked"])
def test_dinov2_swiglu_keys(monkeypatch: pytest.MonkeyPatch, tmp_path, block_chunks: int) -> None:
    monkeypatch.setitem(_REGISTRY, TINY_DINOV2_SWIGLU.name, TINY_DINOV2_SWIGLU)
    source = random_backbone(TINY_DINOV2_SWIGLU.name, seed=5)
    path = tmp_path / "dinov2_tiny_swiglu.pth"
    official = write_dinov2_pth(path, source.vit, swiglu=True, block_chunks=block_chunks)
    assert "blocks.3.mlp.w12.weight" in official or "blocks.1.3.mlp.w12.weight" in official
    assert not any(".fc1." in k or ".fc2." in k for k in official)
    if block_chunks:
        assert "blocks.0.1.norm1.weight" in official and "blocks.1.2.norm1.weight" in official

    loaded = dinokit.create_backbone(TINY_DINOV2_SWIGLU.name, weights=path).eval()
    assert_same_outputs(loaded, source, [(32, 32), (16, 40)])
    inferred = dinokit.load(path)
    assert inferred.config.name == TINY_DINOV2_SWIGLU.name

    # The fused SwiGLU of DINOv2 (SwiGLUFFNFused): x1, x2 = w12(x).chunk(2); w3(silu(x1) * x2).
    prefix = "blocks.0.0.mlp" if block_chunks else "blocks.0.mlp"
    z = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(0))
    x1, x2 = F.linear(z, official[f"{prefix}.w12.weight"], official[f"{prefix}.w12.bias"]).chunk(
        2, dim=-1
    )
    expected = F.linear(
        F.silu(x1) * x2, official[f"{prefix}.w3.weight"], official[f"{prefix}.w3.bias"]
    )
    with torch.inference_mode():
        torch.testing.assert_close(loaded.vit.blocks[0].mlp(z), expected, rtol=1e-5, atol=1e-5)


def test_dinov2_g14_swiglu_width() -> None:
    """The registered g/14 has DINOv2's fused SwiGLU widths (w12: 2 x 4096, w3: 4096 -> D)."""
    from dinokit.models.backbone import build_vit

    with torch.device("meta"):
        vit = build_vit(dinokit.get_config("dinov2_vitg14"))
    mlp = vit.blocks[0].mlp
    assert tuple(mlp.fc1.weight.shape) == (2 * 4096, 1536)
    assert tuple(mlp.fc2.weight.shape) == (1536, 4096)
    assert len(vit.blocks) == 40
