"""Loading checks: wrapper prefixes, strict keys and shapes, pos_embed resampling, unsafe
pickles and damaged files."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dinokit
from dinokit.models.backbone import Backbone
from dinokit.models.registry import _REGISTRY
from dinokit.models.weights import UnsafeCheckpointError, clean_state_dict, read_weights
from tests.models.checkpoints import (
    TINY_DINOV2_REG,
    images,
    official_state,
    perturb_parameters,
    with_prefix,
    write_dino_full_checkpoint,
    write_dinov2_pth,
    write_malicious_pickle,
)


def _assert_same(loaded: Backbone, source: Backbone, size: int = 64) -> None:
    x = images(2, size, size)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.eval()(x), source(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "prefix", ["module.", "_orig_mod.", "_orig_mod.module.", "module._orig_mod."]
)
def test_wrapper_prefixes_are_cleaned(vit_test: Backbone, tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "prefixed.pth"
    torch.save(with_prefix(official_state(vit_test.vit), prefix), path)
    _assert_same(dinokit.create_backbone("vit_test", weights=path), vit_test, size=96)


def test_prefixes_in_safetensors_and_wrapped_dicts(vit_test: Backbone, tmp_path: Path) -> None:
    state = with_prefix(official_state(vit_test.vit), "module.")
    save_file(state, str(tmp_path / "model.safetensors"))
    _assert_same(
        dinokit.create_backbone("vit_test", weights=tmp_path / "model.safetensors"), vit_test
    )
    for wrapper in ("state_dict", "model"):
        torch.save({wrapper: state}, tmp_path / f"{wrapper}.pth")
        _assert_same(
            dinokit.create_backbone("vit_test", weights=tmp_path / f"{wrapper}.pth"), vit_test
        )


def test_clean_state_dict_keeps_inner_names() -> None:
    value = torch.zeros(1)
    cleaned = clean_state_dict(
        {"_orig_mod.module.blocks.0.norm1.weight": value, "norm.bias": value}
    )
    assert set(cleaned) == {"blocks.0.norm1.weight", "norm.bias"}


def test_missing_key_is_named(vit_test: Backbone, tmp_path: Path) -> None:
    state = official_state(vit_test.vit)
    del state["blocks.2.attn.proj.bias"], state["norm.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="missing keys") as info:
        dinokit.create_backbone("vit_test", weights=tmp_path / "missing.pth")
    assert "blocks.2.attn.proj.bias" in str(info.value) and "norm.weight" in str(info.value)
    assert "unexpected" not in str(info.value)


def test_unexpected_key_is_named(vit_test: Backbone, tmp_path: Path) -> None:
    state = official_state(vit_test.vit) | {"blocks.9.mlp.fc3.weight": torch.zeros(2)}
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected keys \[blocks\.9\.mlp\.fc3\.weight\]"):
        dinokit.create_backbone("vit_test", weights=tmp_path / "extra.pth")


def test_shape_mismatch_names_key_and_shapes(vit_test: Backbone, tmp_path: Path) -> None:
    state = official_state(vit_test.vit)
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(128, 64)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.fc1\.weight") as info:
        dinokit.create_backbone("vit_test", weights=tmp_path / "shape.pth")
    assert "(128, 64)" in str(info.value) and "(256, 64)" in str(info.value)


def test_wrong_architecture_is_an_error_not_a_partial_load(
    vit_test: Backbone, tmp_path: Path
) -> None:
    path = tmp_path / "vit_test.pth"
    torch.save(official_state(vit_test.vit), path)
    with pytest.raises(ValueError, match="do not fit"):
        dinokit.create_backbone("dino_vits16", weights=path)


def test_pos_embed_of_another_grid_is_resampled(
    vit_test: Backbone, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A vit_test trained at 32 px: a 4x4 positional grid instead of 8x8.
    config = dataclasses.replace(dinokit.get_config("vit_test"), pos_embed_size=32)
    torch.manual_seed(3)
    small = Backbone(dinokit.models.build_vit(config), config).eval()
    state = official_state(small.vit)
    assert state["pos_embed"].shape == (1, 1 + 4 * 4, 64)
    torch.save(state, tmp_path / "grid4.pth")

    with caplog.at_level(logging.INFO, logger="dinokit"):
        loaded = dinokit.create_backbone("vit_test", weights=tmp_path / "grid4.pth").eval()
    assert "resampling pos_embed from 4x4 to 8x8" in caplog.text
    assert loaded.vit.pos_embed.shape == (1, 1 + 8 * 8, 64)
    # Resampling at load time is what the 4x4 model does on the fly at 64 px.
    _assert_same(loaded, small, size=64)


def test_pos_embed_not_a_square_grid_is_an_error(vit_test: Backbone, tmp_path: Path) -> None:
    state = official_state(vit_test.vit)
    state["pos_embed"] = torch.zeros(1, 1 + 12, 64)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="pos_embed"):
        dinokit.create_backbone("vit_test", weights=tmp_path / "odd.pth")


MALICIOUS_KINDS = ["torch-save-os-system", "torch-save-exec", "pickle-exec"]


@pytest.mark.parametrize("kind", MALICIOUS_KINDS)
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    path = write_malicious_pickle(tmp_path / "evil.pth", marker, kind=kind)
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        dinokit.create_backbone("vit_test", weights=path)
    with pytest.raises(UnsafeCheckpointError):
        dinokit.load(path)
    assert not marker.exists()


def test_malicious_pickle_names_the_refused_global(tmp_path: Path) -> None:
    path = write_malicious_pickle(tmp_path / "evil.pth", tmp_path / "m", kind="torch-save-exec")
    with pytest.raises(UnsafeCheckpointError, match="exec"):
        read_weights(path)


@pytest.mark.parametrize("kind", ["torch-save-exec", "pickle-exec"])
def test_malicious_fixture_really_runs_code_when_unpickled(tmp_path: Path, kind: str) -> None:
    """Control: the payload works, so the refusal above is what keeps the marker away."""
    marker = tmp_path / "marker"
    path = write_malicious_pickle(tmp_path / "evil.pth", marker, kind=kind)
    if kind == "pickle-exec":
        with path.open("rb") as handle:
            pickle.load(handle)
    else:
        torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


def _damaged_files(tmp_path: Path, vit_test: Backbone) -> dict[str, Path]:
    good_pth = tmp_path / "good.pth"
    torch.save(official_state(vit_test.vit), good_pth)
    good_st = tmp_path / "good.safetensors"
    save_file(official_state(vit_test.vit), str(good_st))
    files = {
        "truncated.pth": good_pth.read_bytes()[: good_pth.stat().st_size // 2],
        "empty.pth": b"",
        "text.pth": b"<html>404 Not Found</html>\n" * 4,
        "random.pth": b"\x00\x13" + bytes(range(256)) * 8,
        "truncated.safetensors": good_st.read_bytes()[: good_st.stat().st_size // 2],
        "text.safetensors": b"this is not a safetensors file",
    }
    paths = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = tmp_path / name
    return paths


def test_damaged_files_give_a_clear_value_error(vit_test: Backbone, tmp_path: Path) -> None:
    for name, path in _damaged_files(tmp_path, vit_test).items():
        with pytest.raises(
            ValueError, match=r"not a (readable )?(PyTorch weights|safetensors)"
        ) as info:
            dinokit.create_backbone("vit_test", weights=path)
        assert not isinstance(info.value, UnsafeCheckpointError), name
        assert str(path) in str(info.value), name


def test_non_tensor_entries_and_non_dicts_are_errors(tmp_path: Path) -> None:
    torch.save({"cls_token": torch.zeros(1), "note": "hello"}, tmp_path / "mixed.pth")
    with pytest.raises(ValueError, match="non-tensor entries"):
        read_weights(tmp_path / "mixed.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a dict"):
        read_weights(tmp_path / "list.pth")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        dinokit.create_backbone("vit_test", weights=tmp_path / "nope.pth")


def test_pos_embed_of_another_grid_with_registers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DINOv2 register layout: no prefix positions in timm's grid; resampled all the same."""
    monkeypatch.setitem(_REGISTRY, TINY_DINOV2_REG.name, TINY_DINOV2_REG)
    config = dataclasses.replace(TINY_DINOV2_REG, pos_embed_size=16)
    torch.manual_seed(4)
    small = Backbone(dinokit.models.build_vit(config), config).eval()
    perturb_parameters(small)
    official = write_dinov2_pth(tmp_path / "grid2.pth", small.vit)
    assert official["pos_embed"].shape == (1, 1 + 2 * 2, 64)
    loaded = dinokit.create_backbone(TINY_DINOV2_REG.name, weights=tmp_path / "grid2.pth")
    assert loaded.vit.pos_embed.shape == (1, 4 * 4, 64)
    x = images(2, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.eval()(x), small(x), rtol=1e-5, atol=1e-5)


def test_full_checkpoint_branch_errors(vit_test: Backbone, tmp_path: Path) -> None:
    path = write_dino_full_checkpoint(tmp_path / "ckpt.pth", vit_test.vit, vit_test.vit, 8).path
    with pytest.raises(ValueError, match="branch must be one of"):
        read_weights(path, branch="ema")
    state = torch.load(path, weights_only=False)
    del state["student"]
    torch.save(state, tmp_path / "teacher_only.pth")
    with pytest.raises(ValueError, match="no 'student' weights"):
        dinokit.load(tmp_path / "teacher_only.pth", branch="student")
    assert dinokit.load(tmp_path / "teacher_only.pth").config.name == "vit_test"
