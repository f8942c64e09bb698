"""Writers of weight files in every official layout, for tests (random weights, exact keys).

Each writer takes a timm-layout ViT (``Backbone.vit``; its state dict is the official DINO v1
backbone layout) and writes what the reference code would have written for it:

* :func:`write_dino_backbone_pth` — facebookresearch/dino ``*_pretrain.pth`` (bare keys);
* :func:`write_dino_full_checkpoint` — ``main_dino.py``'s ``checkpoint.pth`` /
  ``*_full_checkpoint.pth`` (student under DDP ``module.``, teacher bare, legacy weight-norm
  head keys, ``dino_loss.center``, NumPy scalars in the optimizer, ``args`` Namespace);
* :func:`write_dinov2_pth` — facebookresearch/dinov2 hub ``*_pretrain.pth`` (``mask_token``,
  ``register_tokens`` with the CLS position inside ``pos_embed``, fused SwiGLU ``w12``/``w3``,
  optional chunked ``blocks.<chunk>.<i>.`` keys);
* :func:`write_dinov3_pth` — facebookresearch/dinov3 hub ``*_pretrain_lvd1689m-<hash>.pth``
  (``storage_tokens``, ``rope_embed.periods``, ``qkv.bias`` with its ``bias_mask``,
  ``ls1.gamma``, SwiGLU ``w1``/``w2``/``w3``, ``mask_token``, ``local_cls_norm``), drawn
  directly in the reference's key layout;
* :func:`write_timm_safetensors` / :func:`write_timm_bin` — timm / Hugging Face files;
* :func:`write_malicious_pickle` — a pickle that runs code when loaded without
  ``weights_only``.

Later suites (training, embedding) reuse these; keep them free of assertions.
"""

from __future__ import annotations

import argparse
import builtins
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import dinokit
from dinokit.dino.head import DINOHead, to_legacy_head_state_dict
from dinokit.models.backbone import Backbone
from dinokit.models.config import BackboneConfig, Preprocessing

StateDict = dict[str, Tensor]

#: Prototypes of the heads in generated DINO full checkpoints (small: fast to write).
HEAD_OUT_DIM = 64

#: Per-block keys of the official DINO v1 ViT (facebookresearch/dino vision_transformer.py).
DINO_V1_BLOCK_KEYS = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)
#: Extra per-block keys of DINOv2 (LayerScale).
DINOV2_EXTRA_BLOCK_KEYS = ("ls1.gamma", "ls2.gamma")

#: A tiny DINOv2-family ViT with 4 registers (register it with ``monkeypatch.setitem``).
TINY_DINOV2_REG = BackboneConfig(
    name="test_dinov2_reg4",
    family="dinov2",
    embed_dim=64,
    depth=2,
    num_heads=4,
    patch_size=8,
    pos_embed_size=32,
    layer_scale=1e-5,
    reg_tokens=4,
    preprocessing=Preprocessing(size=32),
    description="tiny DINOv2 ViT with registers (tests only)",
)
#: A tiny DINOv2-family ViT with the g/14 fused SwiGLU MLP.
TINY_DINOV2_SWIGLU = BackboneConfig(
    name="test_dinov2_swiglu",
    family="dinov2",
    embed_dim=64,
    depth=4,
    num_heads=4,
    patch_size=8,
    pos_embed_size=32,
    mlp="swiglu",
    layer_scale=1e-5,
    preprocessing=Preprocessing(size=32),
    description="tiny DINOv2 ViT with SwiGLU (tests only)",
)


def random_backbone(name: str, *, seed: int) -> Backbone:
    """A registered backbone with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    backbone = dinokit.create_backbone(name, weights="none")
    perturb_parameters(backbone)
    return backbone.eval()


def perturb_parameters(module: nn.Module, scale: float = 0.02) -> None:
    """Add noise to every parameter (uses the global RNG).

    timm zero-initialises biases and starts CLS / register tokens and LayerScale near zero:
    perturbing everything makes a mapping that drops or swaps a tensor visible, and keeps
    the CLS token away from the ill-conditioned near-constant input of the final LayerNorm.
    """
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * scale)


def fail_on_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any connection attempt of dinokit's weight resolver fail the test."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("touched the network")

    monkeypatch.setattr("dinokit.models.weights.hub.socket.create_connection", no_network)
    monkeypatch.setattr("dinokit.models.weights.hub.urllib.request.urlopen", no_network)


def images(batch: int, height: int, width: int, *, seed: int = 0) -> Tensor:
    """(B, 3, H, W) random inputs (as if normalised)."""
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def dino_v1_backbone_keys(depth: int) -> set[str]:
    """The exact key set of an official DINO v1 backbone file with ``depth`` blocks."""
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    keys |= {"norm.weight", "norm.bias"}
    keys |= {f"blocks.{i}.{k}" for i in range(depth) for k in DINO_V1_BLOCK_KEYS}
    return keys


def dinov2_official_keys(depth: int, *, registers: bool) -> set[str]:
    """The exact key set of an official DINOv2 hub file (plain MLP) with ``depth`` blocks."""
    keys = dino_v1_backbone_keys(depth) | {"mask_token"}
    keys |= {f"blocks.{i}.{k}" for i in range(depth) for k in DINOV2_EXTRA_BLOCK_KEYS}
    return keys | {"register_tokens"} if registers else keys


def official_state(vit: nn.Module) -> StateDict:
    """Detached CPU copies of a timm ViT's tensors (the official DINO v1 backbone layout)."""
    return {k: v.detach().cpu().clone() for k, v in vit.state_dict().items()}


def with_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Every key prefixed (``module.`` for DDP, ``_orig_mod.`` for ``torch.compile``...)."""
    return {prefix + k: v for k, v in state_dict.items()}


def write_dino_backbone_pth(path: Path, vit: nn.Module) -> Path:
    """An official DINO v1 backbone file (``dino_deitsmall16_pretrain.pth`` layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(official_state(vit), path)
    return path


def write_timm_safetensors(path: Path, vit: nn.Module) -> Path:
    """A timm / Hugging Face ``model.safetensors`` (no metadata)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in official_state(vit).items()}, str(path))
    return path


def write_timm_bin(path: Path, vit: nn.Module) -> Path:
    """A Hugging Face ``pytorch_model.bin`` (a pickled state dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(official_state(vit), path)
    return path


def random_dino_head(in_dim: int, out_dim: int, *, seed: int) -> DINOHead:
    """A reference-shaped DINO head with random weights and a non-unit weight norm ``g``."""
    torch.manual_seed(seed)
    head = DINOHead(in_dim, out_dim)
    with torch.no_grad():
        for param in head.mlp.parameters():
            param.normal_(0.0, 0.05)
        head.last_layer_g.uniform_(0.5, 2.0)
    return head.eval()


def legacy_head_state(head: DINOHead) -> StateDict:
    """The head's state dict with the reference's ``last_layer.weight_g/weight_v`` keys."""
    state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    return to_legacy_head_state_dict(state)


@dataclass
class DinoFullCheckpoint:
    """What :func:`write_dino_full_checkpoint` wrote besides the backbones."""

    path: Path
    student_head: DINOHead
    teacher_head: DINOHead
    center: Tensor
    epoch: int
    args: argparse.Namespace


def dino_reference_args(*, arch: str = "vit_small", patch_size: int = 16, out_dim: int = 65536):
    """The ``args`` Namespace ``main_dino.py`` stores (a representative subset)."""
    return argparse.Namespace(
        arch=arch,
        patch_size=patch_size,
        out_dim=out_dim,
        norm_last_layer=True,
        momentum_teacher=0.996,
        use_bn_in_head=False,
        warmup_teacher_temp=0.04,
        teacher_temp=0.04,
        warmup_teacher_temp_epochs=0,
        use_fp16=False,
        weight_decay=0.04,
        weight_decay_end=0.4,
        clip_grad=3.0,
        batch_size_per_gpu=64,
        epochs=100,
        freeze_last_layer=1,
        lr=0.0005,
        warmup_epochs=10,
        min_lr=1e-06,
        optimizer="adamw",
        drop_path_rate=0.1,
        global_crops_scale=(0.4, 1.0),
        local_crops_number=8,
        local_crops_scale=(0.05, 0.4),
        data_path="/path/to/imagenet/train/",
        output_dir="/checkpoint/dino/vits16",
        saveckp_freq=20,
        seed=0,
        num_workers=10,
        dist_url="env://",
        local_rank=0,
        rank=0,
        world_size=16,
        gpu=0,
    )


#: facebookresearch/dino README, "Boosting DINO performance": the ViT-S/16 run at 76.0%
#: linear (``run_with_submitit.py --arch vit_small --epochs 300 --teacher_temp 0.07
#: --warmup_teacher_temp_epochs 30 --norm_last_layer false``, 2 nodes x 8 GPUs), over the
#: ``main_dino.py`` defaults of :func:`dino_reference_args`.
BOOSTED_VITS16_ARGS: dict[str, Any] = {
    "epochs": 300,
    "teacher_temp": 0.07,
    "warmup_teacher_temp_epochs": 30,
    "norm_last_layer": False,
    "world_size": 16,
    "batch_size_per_gpu": 64,
}


def write_dino_full_checkpoint(
    path: Path,
    student_vit: nn.Module,
    teacher_vit: nn.Module,
    head_out_dim: int,
    *,
    student_head: DINOHead | None = None,
    teacher_head: DINOHead | None = None,
    center: Tensor | None = None,
    epoch: int = 100,
    seed: int = 0,
    args: dict[str, Any] | None = None,
) -> DinoFullCheckpoint:
    """An official DINO v1 full training checkpoint (``main_dino.py`` ``save_dict``).

    The student is DDP-wrapped in the reference (``module.backbone.*``, ``module.head.*``);
    the teacher of a ViT is not (``backbone.*``, ``head.*``). Heads use the old
    ``torch.nn.utils.weight_norm`` keys ``last_layer.weight_g`` (K, 1) and ``weight_v``
    (K, 256). Heads and centre are random unless given. ``args`` replaces values of the
    recorded ``args`` Namespace (e.g. :data:`BOOSTED_VITS16_ARGS`).
    """
    embed_dim = int(official_state(teacher_vit)["cls_token"].shape[-1])
    student_head = student_head or random_dino_head(embed_dim, head_out_dim, seed=seed + 1)
    teacher_head = teacher_head or random_dino_head(embed_dim, head_out_dim, seed=seed + 2)
    if center is None:
        center = torch.randn(1, head_out_dim, generator=torch.Generator().manual_seed(seed + 3))
    student = with_prefix(official_state(student_vit), "module.backbone.")
    student |= with_prefix(legacy_head_state(student_head), "module.head.")
    teacher = with_prefix(official_state(teacher_vit), "backbone.")
    teacher |= with_prefix(legacy_head_state(teacher_head), "head.")
    recorded = dino_reference_args(
        patch_size=int(official_state(teacher_vit)["patch_embed.proj.weight"].shape[-1]),
        out_dim=head_out_dim,
    )
    for key, value in (args or {}).items():
        setattr(recorded, key, value)
    save_dict: dict[str, Any] = {
        "student": student,
        "teacher": teacher,
        "optimizer": {
            "state": {},
            "param_groups": [
                {"lr": np.float64(1e-4), "weight_decay": np.float64(0.04), "params": [0, 1]},
                {"lr": np.float64(1e-4), "weight_decay": 0.0, "params": [2]},
            ],
        },
        "epoch": epoch,
        "args": recorded,
        "dino_loss": {"center": center.clone()},
        "fp16_scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 0,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(save_dict, path)
    return DinoFullCheckpoint(path, student_head, teacher_head, center, epoch, recorded)


def to_dinov2_official(
    state_dict: StateDict,
    *,
    swiglu: bool = False,
    block_chunks: int = 0,
    seed: int = 0,
) -> StateDict:
    """A timm-layout state dict rewritten as facebookresearch/dinov2 stores it.

    The inverse of dinokit's conversion, written independently: DINOv2 keeps the CLS
    position inside ``pos_embed`` (1, 1 + N, D) also with registers, where timm folds it
    into the CLS token. A random CLS position ``p0`` is chosen and the CLS token becomes
    ``cls - p0`` so the sum the model sees is unchanged. ``mask_token`` (1, D) is added (the
    official file has it; inference ignores it). SwiGLU MLPs use ``w12``/``w3``; with
    ``block_chunks`` blocks are stored as ``blocks.<chunk>.<global index>.`` (FSDP training
    checkpoints).
    """
    gen = torch.Generator().manual_seed(seed)
    sd = {k: v.clone() for k, v in state_dict.items()}
    dim = sd["cls_token"].shape[-1]
    if "reg_token" in sd:
        pos0 = torch.randn(1, 1, dim, generator=gen)
        sd["register_tokens"] = sd.pop("reg_token")
        sd["cls_token"] = sd["cls_token"] - pos0
        sd["pos_embed"] = torch.cat([pos0, sd["pos_embed"]], dim=1)
    sd["mask_token"] = torch.randn(1, dim, generator=gen)
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    per_chunk = -(-depth // block_chunks) if block_chunks else 0
    out: StateDict = {}
    for key, value in sd.items():
        if swiglu:
            key = re.sub(r"^(blocks\.\d+\.mlp)\.fc1\.", r"\1.w12.", key)
            key = re.sub(r"^(blocks\.\d+\.mlp)\.fc2\.", r"\1.w3.", key)
        if per_chunk and (m := re.match(r"^blocks\.(\d+)\.", key)):
            index = int(m.group(1))
            key = f"blocks.{index // per_chunk}.{index}." + key[m.end() :]
        out[key] = value
    return out


def write_dinov2_pth(
    path: Path,
    vit: nn.Module,
    *,
    swiglu: bool = False,
    block_chunks: int = 0,
    seed: int = 0,
) -> StateDict:
    """An official DINOv2 hub file (``dinov2_vits14[_reg4]_pretrain.pth``); returns its dict."""
    state = to_dinov2_official(
        official_state(vit), swiglu=swiglu, block_chunks=block_chunks, seed=seed
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def dinov3_official_state(
    config: BackboneConfig, *, seed: int, local_cls_norm: bool = False
) -> StateDict:
    """Random weights in facebookresearch/dinov3's key layout for a ``dinov3`` config.

    Shapes follow ``DinoVisionTransformer`` as ``dinov3/hub/backbones.py`` builds it: 4
    storage tokens, ``LinearKMaskedBias`` qkv (a ``bias_mask`` of ones with the key third at
    zero, as ``init_weights_vit`` fills it), LayerScale ``ls1``/``ls2.gamma``, ``Mlp`` fc1/fc2
    or ``SwiGLUFFN`` w1/w2/w3. ``rope_embed.periods`` is stored in bfloat16, as in the
    released files; every other tensor is random (biases and LayerScale too, so a dropped or
    swapped tensor shows).
    """
    gen = torch.Generator().manual_seed(seed)
    d, p = config.embed_dim, config.patch_size

    def rand(*shape: int, scale: float = 0.05) -> Tensor:
        return torch.randn(*shape, generator=gen) * scale

    head_dim = d // config.num_heads
    k = torch.arange(head_dim // 4, dtype=torch.float32)
    sd: StateDict = {
        "cls_token": rand(1, 1, d, scale=1.0),
        "storage_tokens": rand(1, config.reg_tokens, d, scale=1.0),
        "mask_token": rand(1, d),
        "patch_embed.proj.weight": rand(d, 3, p, p),
        "patch_embed.proj.bias": rand(d),
        # RopePositionEmbedding._init_weights: base ** (2k / (D_head / 2)), base 100.
        "rope_embed.periods": (100.0 ** (2 * k / (head_dim // 2))).to(torch.bfloat16),
    }
    if config.mlp == "swiglu":
        h = int(int(d * config.mlp_ratio) * 2 / 3)
        h += -h % config.swiglu_align
        mlp = {"w1": (h, d), "w2": (h, d), "w3": (d, h)}
    else:
        h = int(d * config.mlp_ratio)
        mlp = {"fc1": (h, d), "fc2": (d, h)}
    bias_mask = torch.ones(3 * d)
    bias_mask[d : 2 * d] = 0
    for i in range(config.depth):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = 1 + rand(d)
        sd[b + "norm1.bias"] = rand(d)
        sd[b + "attn.qkv.weight"] = rand(3 * d, d, scale=d**-0.5)
        sd[b + "attn.qkv.bias"] = rand(3 * d)  # the key third is masked out by bias_mask
        sd[b + "attn.qkv.bias_mask"] = bias_mask.clone()
        sd[b + "attn.proj.weight"] = rand(d, d, scale=d**-0.5)
        sd[b + "attn.proj.bias"] = rand(d)
        sd[b + "ls1.gamma"] = 0.5 + rand(d)
        sd[b + "norm2.weight"] = 1 + rand(d)
        sd[b + "norm2.bias"] = rand(d)
        for name, (rows, cols) in mlp.items():
            sd[b + f"mlp.{name}.weight"] = rand(rows, cols, scale=cols**-0.5)
            sd[b + f"mlp.{name}.bias"] = rand(rows)
        sd[b + "ls2.gamma"] = 0.5 + rand(d)
    sd["norm.weight"] = 1 + rand(d)
    sd["norm.bias"] = rand(d)
    if local_cls_norm:
        sd["local_cls_norm.weight"] = 1 + rand(d)
        sd["local_cls_norm.bias"] = rand(d)
    return sd


def write_dinov3_pth(
    path: Path, config: BackboneConfig, *, seed: int, local_cls_norm: bool = False
) -> StateDict:
    """An official DINOv3 hub file; returns its dict (see :func:`dinov3_official_state`)."""
    state = dinov3_official_state(config, seed=seed, local_cls_norm=local_cls_norm)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


class _RunsPython:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (self.code,))


def write_malicious_pickle(path: Path, marker: Path, *, kind: str) -> Path:
    """A weights-looking file whose unpickling would create ``marker``.

    Args:
        kind: ``torch-save-os-system`` (``torch.save`` zip, ``os.system``),
            ``pickle-exec`` (a bare protocol-2 pickle calling ``builtins.exec``), or
            ``torch-save-exec``.
    """
    tensors: dict[str, Any] = {"cls_token": torch.zeros(1, 1, 8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "torch-save-os-system":
        torch.save(tensors | {"payload": _RunsShell(f"echo pwned > '{marker}'")}, path)
    elif kind == "torch-save-exec":
        code = f"open({str(marker)!r}, 'w').write('pwned')"
        torch.save(tensors | {"payload": _RunsPython(code)}, path)
    elif kind == "pickle-exec":
        code = f"open({str(marker)!r}, 'w').write('pwned')"
        with path.open("wb") as handle:
            pickle.dump({"payload": _RunsPython(code), "epoch": 1}, handle, protocol=2)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


@dataclass
class DinoV1Files:
    """Two different real-size ``dino_vits16`` models and their official files."""

    teacher: Backbone
    student: Backbone
    backbone_pth: Path  # dino_deitsmall16_pretrain.pth (teacher)
    full: DinoFullCheckpoint  # dino_deitsmall16_pretrain_full_checkpoint.pth
    safetensors: Path  # model.safetensors (teacher)
    pytorch_bin: Path  # pytorch_model.bin (teacher)


@dataclass
class DinoV2File:
    """A real-size DINOv2 model and its official hub file."""

    source: Backbone
    path: Path
    official: dict[str, torch.Tensor]


@dataclass
class Caches:
    """The isolated cache folders of one test."""

    torch_home: Path
    hub_checkpoints: Path
    hf_cache: Path
