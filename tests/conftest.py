"""Shared fixtures: offline, isolated weight caches for every test; official-layout files.

Every test runs with ``TORCH_HOME`` and the Hugging Face cache pointing at an empty temporary
folder and ``DINOKIT_OFFLINE=1``: no test reads the user's caches or touches the network.
Tests that need the online code path undo it with ``monkeypatch.delenv``.

The session fixtures build each real-size backbone once (random weights, fixed seeds) and
write its official files once; tests only read them.
"""

from __future__ import annotations

import pytest

from dinokit.models.backbone import Backbone
from tests.models.checkpoints import (
    HEAD_OUT_DIM,
    Caches,
    DinoV1Files,
    DinoV2File,
    random_backbone,
    write_dino_backbone_pth,
    write_dino_full_checkpoint,
    write_dinov2_pth,
    write_timm_bin,
    write_timm_safetensors,
)


@pytest.fixture(autouse=True)
def offline_caches(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Caches:
    """Empty ``TORCH_HOME`` and HF cache, offline mode on (autouse)."""
    root = tmp_path_factory.mktemp("caches")
    caches = Caches(root / "torch", root / "torch" / "hub" / "checkpoints", root / "hf" / "hub")
    monkeypatch.setenv("TORCH_HOME", str(caches.torch_home))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(caches.hf_cache))
    monkeypatch.setenv("DINOKIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return caches


@pytest.fixture(scope="session")
def dino_vits16_files(tmp_path_factory: pytest.TempPathFactory) -> DinoV1Files:
    """Official DINO v1 ViT-S/16 files written once per session."""
    folder = tmp_path_factory.mktemp("dino_vits16")
    teacher = random_backbone("dino_vits16", seed=0)
    student = random_backbone("dino_vits16", seed=1)
    full = write_dino_full_checkpoint(
        folder / "dino_deitsmall16_pretrain_full_checkpoint.pth",
        student.vit,
        teacher.vit,
        HEAD_OUT_DIM,
    )
    return DinoV1Files(
        teacher=teacher,
        student=student,
        backbone_pth=write_dino_backbone_pth(folder / "dino_deitsmall16_pretrain.pth", teacher.vit),
        full=full,
        safetensors=write_timm_safetensors(folder / "hf" / "model.safetensors", teacher.vit),
        pytorch_bin=write_timm_bin(folder / "hf" / "pytorch_model.bin", teacher.vit),
    )


@pytest.fixture(scope="session")
def dinov2_vits14_file(tmp_path_factory: pytest.TempPathFactory) -> DinoV2File:
    """``dinov2_vits14_pretrain.pth`` written once per session."""
    source = random_backbone("dinov2_vits14", seed=2)
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_pretrain.pth"
    return DinoV2File(source, path, write_dinov2_pth(path, source.vit, seed=2))


@pytest.fixture(scope="session")
def dinov2_vits14_reg_file(tmp_path_factory: pytest.TempPathFactory) -> DinoV2File:
    """``dinov2_vits14_reg4_pretrain.pth`` written once per session."""
    source = random_backbone("dinov2_vits14_reg", seed=3)
    path = tmp_path_factory.mktemp("dinov2_reg") / "dinov2_vits14_reg4_pretrain.pth"
    return DinoV2File(source, path, write_dinov2_pth(path, source.vit, seed=3))


@pytest.fixture
def vit_test() -> Backbone:
    """A fresh ``vit_test`` with seeded random weights, in eval mode."""
    return random_backbone("vit_test", seed=0)
