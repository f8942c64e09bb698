"""dinokit's own export: self-describing ``.safetensors`` that reload with no name, run folders."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import dinokit
from dinokit.models.backbone import Backbone
from dinokit.models.config import BackboneConfig, Preprocessing
from dinokit.models.export import FORMAT_VERSION
from dinokit.models.registry import _REGISTRY
from dinokit.models.weights import read_weights
from tests.models.checkpoints import (
    HEAD_OUT_DIM,
    TINY_DINOV2_REG,
    fail_on_network,
    images,
    random_backbone,
    write_dino_backbone_pth,
    write_dino_full_checkpoint,
    write_timm_safetensors,
)


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


def test_metadata_describes_the_model_completely(vit_test: Backbone, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "shop"
    facts = {"base_weights": "/w/dino.pth", "run": str(run), "epochs": 2.5}
    path = dinokit.save_backbone(
        vit_test, run / "student.safetensors", branch="student", provenance=facts
    )
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    meta = json.loads(header["dinokit"])
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["backbone"]["name"] == "vit_test"
    assert meta["backbone"]["patch_size"] == 8
    pre = vit_test.config.preprocessing
    assert meta["preprocessing"] == {
        "size": pre.size,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "interpolation": pre.interpolation,
        "crop_pct": pre.crop_pct,
        "mode": pre.mode,
    }
    assert meta["branch"] == "student"
    provenance = meta["provenance"]
    assert {k: provenance[k] for k in facts} == facts
    created = datetime.fromisoformat(provenance["created"])
    assert created.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 3600


def test_load_every_kind_of_local_source_offline(
    vit_test: Backbone, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fail_on_network(monkeypatch)
    student = random_backbone("vit_test", seed=1)
    run = tmp_path / "run"
    dinokit.save_backbone(vit_test, run / "teacher.safetensors", branch="teacher")
    official = write_dino_backbone_pth(tmp_path / "dino_pretrain.pth", vit_test.vit)
    full = write_dino_full_checkpoint(
        tmp_path / "checkpoint.pth", student.vit, vit_test.vit, HEAD_OUT_DIM
    )
    sources: list[tuple[str | Path, Backbone | None]] = [
        ("vit_test", None),  # a registered name without official weights
        (run, vit_test),
        (run / "teacher.safetensors", vit_test),
        (official, vit_test),
        (full.path, vit_test),
        (write_timm_safetensors(tmp_path / "hf" / "model.safetensors", vit_test.vit), vit_test),
    ]
    for source, expected in sources:
        loaded = dinokit.load(source)
        assert not loaded.training, source
        assert not any(m.training for m in loaded.modules()), source
        if expected is not None:
            x = images(1, 64, 64)
            with torch.inference_mode():
                torch.testing.assert_close(loaded(x), expected(x), rtol=1e-5, atol=1e-5)


def test_exporting_a_run_keeps_its_provenance(vit_test: Backbone, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "shop"
    facts = {"base_weights": "/w/dino.pth", "run": str(run), "epochs": 4.0, "steps": 40}
    dinokit.save_backbone(vit_test, run / "teacher.safetensors", branch="teacher", provenance=facts)
    out = dinokit.export(run, tmp_path / "shared" / "shop.safetensors")
    meta = read_weights(out).metadata
    assert meta["branch"] == "teacher"
    assert {k: meta["provenance"][k] for k in facts} == facts
    assert meta["provenance"]["exported_from"] == str((run / "teacher.safetensors").resolve())
    _assert_same(dinokit.load(out), vit_test, [(64, 64)])


def test_exporting_an_official_checkpoint_records_it(tmp_path: Path) -> None:
    teacher = random_backbone("vit_test", seed=2)
    student = random_backbone("vit_test", seed=3)
    full = write_dino_full_checkpoint(
        tmp_path / "checkpoint.pth", student.vit, teacher.vit, HEAD_OUT_DIM, epoch=7
    )
    out = dinokit.export(full.path, tmp_path / "s.safetensors", branch="student")
    meta = read_weights(out).metadata
    assert meta["branch"] == "student"
    assert meta["provenance"]["base_weights"] == str(full.path.resolve())
    assert meta["provenance"]["epochs"] == 7
    assert meta["backbone"]["name"] == "vit_test"
    _assert_same(dinokit.load(out), student, [(32, 32)])
