"""``dinokit export``: the timm / official DINO layout, ONNX, overwriting and atomic writes."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dinokit
from dinokit._files import atomic_write
from dinokit.cli import main
from dinokit.models.backbone import Backbone, build_vit
from dinokit.models.export import save_timm, timm_model_name
from dinokit.models.onnx_export import export_onnx
from dinokit.models.weights import read_weights
from tests.models.checkpoints import fail_on_network, images, random_backbone

_ONNX_MISSING = [
    m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None
]
needs_onnx = pytest.mark.skipif(
    bool(_ONNX_MISSING),
    reason=f"ONNX export tests need {', '.join(_ONNX_MISSING)}: pip install 'dinokit[onnx]'",
)


def _plain_timm_vit(backbone: Backbone) -> torch.nn.Module:
    """A timm ``VisionTransformer`` built from scratch, as another tool would."""
    from timm.models.vision_transformer import VisionTransformer

    cfg = backbone.config
    return VisionTransformer(
        img_size=cfg.pos_embed_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        num_classes=0,
    ).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_layout_loads_into_a_plain_timm_vit(
    vit_test: Backbone, tmp_path: Path, suffix: str
) -> None:
    run = tmp_path / "run"
    dinokit.save_backbone(vit_test, run / "teacher.safetensors", branch="teacher")
    out = dinokit.export(run, tmp_path / f"vit{suffix}", format="timm")

    if suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(out))
    else:
        state = torch.load(out, map_location="cpu", weights_only=True)
    vit = _plain_timm_vit(vit_test)
    vit.load_state_dict(state, strict=True)
    x = images(2, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(vit(x), vit_test(x), rtol=1e-6, atol=1e-6)
        tokens = vit.forward_features(x)[:, 1:]
        torch.testing.assert_close(tokens, vit_test.forward_features(x).patch_tokens)
    # dinokit reads it back as a timm file (architecture recognised from the tensors).
    assert read_weights(out).layout in ("timm", "dino-backbone")
    assert dinokit.load(out).config.name == "vit_test"


def test_timm_create_model_reads_the_export(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``timm.create_model(name, pretrained_cfg_overlay=dict(file=...))``, offline."""
    import timm

    fail_on_network(monkeypatch)
    source = random_backbone("dino_vits16", seed=4)
    name = timm_model_name(source.config)
    assert name == "vit_small_patch16_224.dino"
    path = save_timm(source, tmp_path / "dino_vits16.safetensors")
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    x = images(1, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(model.eval()(x), source(x), rtol=1e-6, atol=1e-6)


def test_never_overwrites_without_permission(vit_test: Backbone, tmp_path: Path) -> None:
    model = dinokit.save_backbone(vit_test, tmp_path / "m.safetensors")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        dinokit.export(model, out)
    assert out.read_bytes() == b"keep me"
    dinokit.export(model, out, overwrite=True)
    assert read_weights(out).layout == "dinokit-export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "out.safetensors"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(out, broken)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_branch_the_file_does_not_hold_is_an_error(vit_test: Backbone, tmp_path: Path) -> None:
    model = dinokit.save_backbone(vit_test, tmp_path / "teacher.safetensors", branch="teacher")
    with pytest.raises(ValueError, match="holds the teacher branch only"):
        dinokit.export(model, tmp_path / "s.safetensors", branch="student")
    assert not (tmp_path / "s.safetensors").exists()


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("dinokit", "m.pth"), ("timm", "m.onnx"), ("onnx", "m.safetensors"), ("nope", "m.x")],
)
def test_wrong_extension_or_format_is_an_error(tmp_path: Path, fmt: str, name: str) -> None:
    with pytest.raises(ValueError, match="format"):
        dinokit.export("vit_test", tmp_path / name, format=fmt)
    assert not (tmp_path / name).exists()


def test_export_command(
    vit_test: Backbone, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    student = random_backbone("vit_test", seed=9)
    dinokit.save_backbone(vit_test, run / "teacher.safetensors", branch="teacher")
    dinokit.save_backbone(student, run / "student.safetensors", branch="student")
    out = tmp_path / "exports" / "student.safetensors"
    args = ["export", str(run), "--branch", "student", "--out", str(out)]
    assert main(args) == 0
    assert str(out) in capsys.readouterr().out
    assert read_weights(out).metadata["branch"] == "student"
    x = images(1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(dinokit.load(out)(x), student(x))
    before = out.read_bytes()
    assert main(args) == 2  # exists: refused, unchanged
    assert out.read_bytes() == before
    assert main([*args, "--format", "timm", "--overwrite"]) == 0
    assert read_weights(out).layout == "timm"


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Backbone]:
    """``vit_test`` exported once through the command (which checks it with onnxruntime)."""
    folder = tmp_path_factory.mktemp("onnx")
    source = random_backbone("vit_test", seed=5)
    model = dinokit.save_backbone(source, folder / "m.safetensors")
    out = folder / "out" / "vit_test.onnx"
    assert main(["export", str(model), "--format", "onnx", "--out", str(out)]) == 0
    return out, source


@needs_onnx
def test_onnx_matches_pytorch_for_any_batch(onnx_export: tuple[Path, Backbone]) -> None:
    import onnxruntime

    path, source = onnx_export
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "images"
    assert isinstance(inp.shape[0], str)  # the dynamic batch axis
    assert list(inp.shape[1:]) == [3, 64, 64]
    assert [o.name for o in session.get_outputs()] == ["cls", "patch_tokens"]
    for batch in (1, 4):
        x = images(batch, 64, 64, seed=batch)
        cls, patches = session.run(None, {"images": x.numpy()})
        with torch.inference_mode():
            want = source.forward_features(x)
        assert cls.shape == (batch, 64)
        assert patches.shape == (batch, 64, 64)
        np.testing.assert_allclose(cls, want.cls.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(patches, want.patch_tokens.numpy(), atol=1e-4, rtol=0)


@needs_onnx
def test_onnx_carries_the_preprocessing(onnx_export: tuple[Path, Backbone]) -> None:
    import onnx

    path, source = onnx_export
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = json.loads(props["dinokit"])
    assert meta["preprocessing"]["size"] == source.config.preprocessing.size
    assert meta["backbone"]["name"] == "vit_test"
    assert sorted(p.name for p in path.parent.iterdir()) == ["vit_test.onnx"]


def test_onnx_check_without_onnxruntime_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from dinokit.models import onnx_export

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level(logging.WARNING):
        diff = onnx_export._compare_with_torch(
            tmp_path / "x.onnx", torch.nn.Identity(), torch.zeros(1), shown=tmp_path / "m.onnx"
        )
    assert diff is None
    assert "onnxruntime is not installed" in caplog.text
    assert "m.onnx" in caplog.text


def test_onnx_size_must_fit_the_patches(vit_test: Backbone, tmp_path: Path) -> None:
    from dinokit.models.onnx_export import export_onnx

    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        export_onnx(vit_test, tmp_path / "m.onnx", size=60)
    assert not list(tmp_path.iterdir())


@needs_onnx
@pytest.mark.parametrize("interp", ["offset", "antialias"])
def test_onnx_resamples_positions_by_the_models_rule(tmp_path: Path, interp: str) -> None:
    """At a size other than the table's, the graph holds the family's resampling (fp32)."""
    import onnx
    import onnxruntime

    torch.manual_seed(0)
    config = dataclasses.replace(dinokit.get_config("vit_test"), pos_embed_interp=interp)
    source = Backbone(build_vit(config), config).eval()
    path = export_onnx(source, tmp_path / "m.onnx", size=40).path
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images(2, 40, 40, seed=3)
    cls, patches = session.run(None, {"images": x.numpy()})
    with torch.inference_mode():
        want = source.forward_features(x)
    np.testing.assert_allclose(cls, want.cls.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(patches, want.patch_tokens.numpy(), atol=1e-5, rtol=0)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["dinokit"])["backbone"]["pos_embed_interp"] == interp
