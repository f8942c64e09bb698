"""dinokit's own export: self-describing ``.safetensors`` that reload with no name, run folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import dinokit
from dinokit.models.backbone import Backbone
from dinokit.models.config import BackboneConfig, Preprocessing
from dinokit.models.registry import _REGISTRY
from dinokit.models.weights import read_weights
from tests.models.checkpoints import TINY_DINOV2_REG, images, random_backbone


def _assert_same(loaded: Backbone, source: Backbone, sizes: list[tuple[int, int]]) -> None:
    for h, w in sizes:
        x = images(2, h, w)
        with torch.inference_mode():
            got, want = loaded.forward_features(x), source.forward_features(x)
        torch.testing.assert_close(got.cls, want.cls, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got.patch_tokens, want.patch_tokens, rtol=1e-6, atol=1e-6)


def test_export_reloads_without_naming_the_model(vit_test: Backbone, tmp_path: Path) -> None:
    path = dinokit.save_backbone(
        vit_test,
        tmp_path / "out" / "model.safetensors",
        branch="teacher",
        provenance={"base_weights": "none", "epochs": 3},
    )
    loaded = dinokit.load(path)
    assert not loaded.training
    assert loaded.config == vit_test.config
    assert loaded.source == str(path)
    _assert_same(loaded, vit_test, [(64, 64), (96, 96), (48, 80)])

    meta = read_weights(path).metadata
    assert meta["format_version"] == 1
    assert meta["branch"] == "teacher"
    assert BackboneConfig.from_dict(meta["backbone"]) == vit_test.config
    assert Preprocessing.from_dict(meta["preprocessing"]) == vit_test.config.preprocessing
    assert meta["provenance"]["base_weights"] == "none"
    assert meta["provenance"]["epochs"] == 3
    assert "created" in meta["provenance"]
    assert read_weights(path).layout == "dinokit-export"


def test_export_keeps_the_official_key_layout(vit_test: Backbone, tmp_path: Path) -> None:
    path = dinokit.save_backbone(vit_test, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    assert keys == set(vit_test.vit.state_dict())
    # Another tool that knows the architecture loads it by name too.
    by_name = dinokit.create_backbone("vit_test", weights=path)
    _assert_same(by_name.eval(), vit_test, [(64, 64)])


def test_export_carries_changed_preprocessing(vit_test: Backbone, tmp_path: Path) -> None:
    vit_test.config = vit_test.config.with_preprocessing(size=96, mode="letterbox")
    loaded = dinokit.load(dinokit.save_backbone(vit_test, tmp_path / "m.safetensors"))
    assert loaded.config.preprocessing.size == 96
    assert loaded.config.preprocessing.mode == "letterbox"


def test_export_of_an_unregistered_architecture(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The config in the file is enough: the backbone need not be registered when loading."""
    with monkeypatch.context() as patch:
        patch.setitem(_REGISTRY, TINY_DINOV2_REG.name, TINY_DINOV2_REG)
        source = random_backbone(TINY_DINOV2_REG.name, seed=6)
    assert TINY_DINOV2_REG.name not in dinokit.list_backbones()
    loaded = dinokit.load(dinokit.save_backbone(source, tmp_path / "reg.safetensors"))
    assert loaded.config == TINY_DINOV2_REG
    _assert_same(loaded, source, [(32, 32), (24, 40)])


def test_run_folder_picks_the_branch(tmp_path: Path) -> None:
    teacher = random_backbone("vit_test", seed=10)
    student = random_backbone("vit_test", seed=11)
    run = tmp_path / "runs" / "shop"
    dinokit.save_backbone(teacher, run / "teacher.safetensors", branch="teacher")
    dinokit.save_backbone(student, run / "student.safetensors", branch="student")

    default = dinokit.load(run)
    _assert_same(default, teacher, [(64, 64)])
    picked = dinokit.load(run, branch="student")
    _assert_same(picked, student, [(64, 64)])
    assert picked.source == str(run / "student.safetensors")


def test_folder_without_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"teacher\.safetensors"):
        dinokit.load(tmp_path)


def test_load_puts_the_model_on_the_device(vit_test: Backbone, tmp_path: Path) -> None:
    path = dinokit.save_backbone(vit_test, tmp_path / "m.safetensors")
    loaded = dinokit.load(path, device="cpu")
    assert next(loaded.parameters()).device.type == "cpu"


def test_export_of_a_timm_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = dinokit.create_backbone("timm:vit_tiny_patch16_224", weights="none").eval()
    loaded = dinokit.load(dinokit.save_backbone(source, tmp_path / "tiny.safetensors"))
    assert loaded.config == source.config
    _assert_same(loaded, source, [(32, 48)])
