"""Hugging Face ``transformers`` checkpoints in and out, checked against transformers itself.

Models are built in the test from transformers configs (tiny, seeded random weights; nothing
is downloaded), written with ``save_pretrained`` and read by dinokit; outputs are compared
with transformers' own forward in float32. transformers' ``Dinov2WithRegistersModel``
interpolates positional embeddings as dinokit does (bicubic with antialiasing), so it is
compared at a non-native size too; ``Dinov2Model`` and ``ViTModel`` interpolate without
antialiasing, so they are compared at their native size (see ``dinokit.models.hf_format``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import dinokit
from dinokit.cli import main
from dinokit.models.hf_format import backbone_config_from_hf
from dinokit.models.registry import _REGISTRY
from dinokit.models.weights import OfflineWeightsError, read_weights
from tests.models.checkpoints import (
    TINY_DINOV2_REG,
    TINY_DINOV2_SWIGLU,
    Caches,
    fail_on_network,
    images,
    perturb_parameters,
    random_backbone,
)

transformers = pytest.importorskip(
    "transformers", reason="transformers tests need pip install 'dinokit[hf]'"
)

_TINY = {"hidden_size": 64, "num_attention_heads": 4, "patch_size": 8, "image_size": 32}
ATOL = 1e-4  # float32 throughout


def _hf_model(kind: str, *, seed: int = 0, **overrides: Any) -> Any:
    """A tiny transformers model with seeded random weights (eval mode).

    Every parameter is perturbed: transformers zero-initialises biases and sets LayerScale to
    a constant, which would hide a mapping that swaps or drops them.
    """
    torch.manual_seed(seed)
    if kind == "vit":
        config = transformers.ViTConfig(
            **{**_TINY, "num_hidden_layers": 3, "intermediate_size": 256, **overrides}
        )
        model = transformers.ViTModel(config, add_pooling_layer=False)
    elif kind == "dinov2_with_registers":
        config = transformers.Dinov2WithRegistersConfig(
            **{**_TINY, "num_hidden_layers": 2, "num_register_tokens": 4, **overrides}
        )
        model = transformers.Dinov2WithRegistersModel(config)
    else:
        config = transformers.Dinov2Config(**{**_TINY, "num_hidden_layers": 2, **overrides})
        model = transformers.Dinov2Model(config)
    perturb_parameters(model)
    return model.eval()


def _hf_tokens(model: Any, x: Tensor) -> Tensor:
    """transformers' (B, T, D) tokens after the final LayerNorm."""
    kwargs = {"interpolate_pos_encoding": True} if model.config.model_type == "vit" else {}
    with torch.inference_mode():
        out: Tensor = model(pixel_values=x, **kwargs).last_hidden_state
    return out


def _assert_matches_transformers(
    model: Any, backbone: dinokit.Backbone, sizes: list[tuple[int, int]], *, batch: int = 2
) -> None:
    """CLS, registers and patch tokens of dinokit equal transformers' within ``ATOL``."""
    k = backbone.num_prefix_tokens
    for seed, (h, w) in enumerate(sizes):
        x = images(batch, h, w, seed=seed)
        want = _hf_tokens(model, x)
        with torch.inference_mode():
            got = backbone.forward_features(x)
        torch.testing.assert_close(got.cls, want[:, 0], rtol=0, atol=ATOL)
        torch.testing.assert_close(got.register_tokens, want[:, 1:k], rtol=0, atol=ATOL)
        torch.testing.assert_close(got.patch_tokens, want[:, k:], rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("kind", "overrides", "sizes"),
    [
        ("dinov2", {}, [(32, 32)]),
        ("dinov2", {"use_swiglu_ffn": True}, [(32, 32)]),
        ("dinov2_with_registers", {}, [(32, 32), (48, 80)]),
        ("vit", {"layer_norm_eps": 1e-6}, [(32, 32)]),
    ],
    ids=["dinov2", "dinov2-swiglu", "dinov2-registers", "vit"],
)
def test_saved_pretrained_folders_match_transformers(
    tmp_path: Path, kind: str, overrides: dict[str, Any], sizes: list[tuple[int, int]]
) -> None:
    model = _hf_model(kind, **overrides)
    model.save_pretrained(tmp_path / "model")
    backbone = dinokit.load(tmp_path / "model")
    assert read_weights(tmp_path / "model").layout == "transformers"
    assert backbone.config.reg_tokens == (4 if kind == "dinov2_with_registers" else 0)
    assert backbone.config.mlp == ("swiglu" if overrides.get("use_swiglu_ffn") else "mlp")
    _assert_matches_transformers(model, backbone, sizes)


def test_vit_with_transformers_default_layer_norm_eps(tmp_path: Path) -> None:
    """ViTConfig's LayerNorm epsilon is 1e-12; dinokit keeps the official DINO 1e-6.

    On these random weights (a near-constant CLS input to the final LayerNorm: the worst case)
    the CLS token moves by a few 1e-4; patch tokens stay within 1e-4.
    """
    model = _hf_model("vit")
    assert model.config.layer_norm_eps == 1e-12
    model.save_pretrained(tmp_path / "model")
    backbone = dinokit.load(tmp_path / "model")
    x = images(2, 32, 32)
    want = _hf_tokens(model, x)
    with torch.inference_mode():
        got = backbone.forward_features(x)
    torch.testing.assert_close(got.patch_tokens, want[:, 1:], rtol=0, atol=ATOL)
    torch.testing.assert_close(got.cls, want[:, 0], rtol=0, atol=1e-3)


def test_matching_shape_maps_to_the_registered_backbone(tmp_path: Path) -> None:
    """A ViTConfig with vit_test's shape loads as vit_test (and keeps its preprocessing)."""
    model = _hf_model("vit", layer_norm_eps=1e-6, num_hidden_layers=4, image_size=64)
    model.save_pretrained(tmp_path / "model")
    backbone = dinokit.load(tmp_path / "model")
    assert backbone.config == dinokit.get_config("vit_test")
    _assert_matches_transformers(model, backbone, [(64, 64)])


@pytest.mark.parametrize(
    ("model_type", "name"),
    [
        ("dinov2", "dinov2_vits14"),
        ("dinov2", "dinov2_vitg14"),
        ("dinov2_with_registers", "dinov2_vitb14_reg"),
        ("vit", "dino_vits16"),
        ("vit", "dino_vitb8"),
    ],
)
def test_real_size_configs_map_to_registered_names(model_type: str, name: str) -> None:
    """The configs transformers' converters write for the official models (config only)."""
    registered = dinokit.get_config(name)
    fields = {
        "hidden_size": registered.embed_dim,
        "num_hidden_layers": registered.depth,
        "num_attention_heads": registered.num_heads,
        "patch_size": registered.patch_size,
        "image_size": registered.pos_embed_size,
    }
    if model_type == "vit":
        config = transformers.ViTConfig(**fields, intermediate_size=4 * registered.embed_dim)
    elif model_type == "dinov2":
        config = transformers.Dinov2Config(**fields, use_swiglu_ffn=registered.mlp == "swiglu")
    else:
        config = transformers.Dinov2WithRegistersConfig(**fields, num_register_tokens=4)
    found = backbone_config_from_hf(config.to_dict(), preprocessor=None, label="x")
    assert found.name == name


@pytest.mark.slow
def test_real_size_dinov2_vits14_weights_load(tmp_path: Path) -> None:
    """A random-weight Dinov2Model of dinov2_vits14's size loads into dinov2_vits14."""
    config = transformers.Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=518
    )
    torch.manual_seed(0)
    model = transformers.Dinov2Model(config).eval()
    perturb_parameters(model)
    model.save_pretrained(tmp_path / "dinov2-small")
    backbone = dinokit.load(tmp_path / "dinov2-small")
    assert backbone.config.name == "dinov2_vits14"
    _assert_matches_transformers(model, backbone, [(518, 518)], batch=1)


def test_pytorch_model_bin_and_classifier_prefixes(tmp_path: Path) -> None:
    """``pytorch_model.bin`` reads the same; a ForImageClassification head is refused, listed."""
    from safetensors.torch import load_file

    model = _hf_model("dinov2")
    model.save_pretrained(tmp_path / "st")
    state = load_file(str(tmp_path / "st" / "model.safetensors"))
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    torch.save(state, folder / "pytorch_model.bin")
    _assert_matches_transformers(model, dinokit.load(folder), [(32, 32)])

    classifier = tmp_path / "classifier"
    classifier.mkdir()
    (classifier / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    prefixed = {f"dinov2.{k}": v for k, v in state.items()}
    prefixed["classifier.weight"] = torch.zeros(10, 128)
    torch.save(prefixed, classifier / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"unexpected keys \[classifier.weight\]"):
        dinokit.load(classifier)


def test_unknown_keys_and_model_types_are_errors(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    model = _hf_model("dinov2_with_registers")
    model.save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    state = load_file(str(weights))
    state["encoder.layer.0.extra.weight"] = torch.zeros(2)
    del state["encoder.layer.1.norm2.bias"]
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"missing keys \[blocks.1.norm2.bias\]") as info:
        dinokit.load(tmp_path / "model")
    assert "encoder.layer.0.extra.weight" in str(info.value)

    config = json.loads((tmp_path / "model" / "config.json").read_text())
    (tmp_path / "model" / "config.json").write_text(json.dumps({**config, "model_type": "deit"}))
    with pytest.raises(ValueError, match="model_type 'deit' is not one dinokit reads"):
        dinokit.load(tmp_path / "model")


def _cache_snapshot(caches: Caches, repo: str, source: Path) -> Path:
    """Lay ``source`` out as the Hugging Face cache does (``refs/main`` -> a snapshot)."""
    repo_dir = caches.hf_cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for path in source.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0123abcd")
    return snapshot


def test_repository_id_reads_the_hf_cache_offline(
    tmp_path: Path, offline_caches: Caches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DINOKIT_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fail_on_network(monkeypatch)
    model = _hf_model("vit", layer_norm_eps=1e-6, num_hidden_layers=4, image_size=64)
    model.save_pretrained(tmp_path / "model")
    _cache_snapshot(offline_caches, "someone/tiny-dino", tmp_path / "model")

    by_model = dinokit.load("hf:someone/tiny-dino")
    by_weights = dinokit.create_backbone("vit_test", weights="hf:someone/tiny-dino").eval()
    for backbone in (by_model, by_weights):
        _assert_matches_transformers(model, backbone, [(64, 64)])


def test_missing_repository_offline_says_what_to_do() -> None:
    with pytest.raises(OfflineWeightsError, match="huggingface-cli download facebook/dinov2-small"):
        dinokit.load("hf:facebook/dinov2-small")
    with pytest.raises(ValueError, match="hf:<org>/<name>"):
        dinokit.load("hf:dinov2-small")


# --- export ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_dinov2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the tiny DINOv2 test backbones for one test."""
    for config in (TINY_DINOV2_REG, TINY_DINOV2_SWIGLU):
        monkeypatch.setitem(_REGISTRY, config.name, config)


@pytest.mark.parametrize(
    ("name", "model_class"),
    [
        ("vit_test", "ViTModel"),
        ("test_dinov2_swiglu", "Dinov2Model"),
        ("test_dinov2_reg4", "Dinov2WithRegistersModel"),
    ],
)
def test_export_loads_in_transformers_and_comes_back(
    tiny_dinov2: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    model_class: str,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = random_backbone(name, seed=5)
    dinokit.save_backbone(source, tmp_path / "run" / "teacher.safetensors", branch="teacher")
    out = dinokit.export(tmp_path / "run", tmp_path / "hf", format="transformers")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]

    kwargs = {"add_pooling_layer": False} if model_class == "ViTModel" else {}
    model = transformers.AutoModel.from_pretrained(out, **kwargs).eval()
    assert type(model).__name__ == model_class
    native = source.config.pos_embed_size
    _assert_matches_transformers(model, source, [(native, native)])

    back = dinokit.load(out)
    assert back.config == source.config
    x = images(2, 48, 32)
    with torch.inference_mode():
        want, got = source.forward_features(x), back.forward_features(x)
    torch.testing.assert_close(got.cls, want.cls, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.patch_tokens, want.patch_tokens, rtol=0, atol=1e-6)


def test_export_writes_an_image_processor(tmp_path: Path) -> None:
    """``AutoImageProcessor`` does dinokit's resize-then-centre-crop at the model's size."""
    import numpy as np
    from PIL import Image

    out = dinokit.export("vit_test", tmp_path / "hf", format="transformers", weights="none")
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    pixels = processor(Image.fromarray(np.zeros((90, 120, 3), np.uint8)), return_tensors="pt")
    assert pixels["pixel_values"].shape == (1, 3, 64, 64)
    config = dinokit.get_config("vit_test").preprocessing
    assert tuple(processor.image_mean) == config.mean
    assert tuple(processor.image_std) == config.std
    assert processor.size["shortest_edge"] == round(64 / config.crop_pct)


def test_timm_backbones_have_no_transformers_export(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no faithful transformers equivalent.*--format timm"):
        dinokit.export(
            "timm:vit_tiny_patch16_224", tmp_path / "hf", format="transformers", weights="none"
        )
    assert not (tmp_path / "hf").exists()


def test_export_command_writes_a_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "hf"
    with caplog.at_level(logging.INFO):
        code = main(["export", "vit_test", "--weights", "none", "--format", "transformers",
                     "--out", str(out)])  # fmt: skip
    assert code == 0
    assert (out / "model.safetensors").is_file()
    assert "add_pooling_layer=False" in caplog.text
    assert main(["export", "vit_test", "--format", "transformers", "--out", str(out)]) == 2
    assert "pass --overwrite" in caplog.text
    bad = tmp_path / "x.safetensors"
    assert main(["export", "vit_test", "--format", "transformers", "--out", str(bad)]) == 2
    assert not bad.exists()


@pytest.mark.parametrize("as_weights", [False, True], ids=["model", "weights"])
def test_training_starts_from_a_transformers_model(
    tmp_path: Path, offline_caches: Caches, as_weights: bool
) -> None:
    """``train --model hf:...`` and ``--model NAME --weights hf:...`` start from its weights."""
    from tests.training.test_run import build, tiny_config

    model = _hf_model("vit", layer_norm_eps=1e-6, num_hidden_layers=4, image_size=64)
    model.save_pretrained(tmp_path / "model")
    _cache_snapshot(offline_caches, "someone/tiny-dino", tmp_path / "model")
    spec = {"model": "vit_test", "weights": "hf:someone/tiny-dino"} if as_weights else {
        "model": "hf:someone/tiny-dino", "weights": None}  # fmt: skip
    nets = build(tiny_config(tmp_path, tmp_path / "run", **spec))
    assert nets.config.lr == 1e-4  # fine-tuning defaults, not from scratch
    backbone = nets.teacher.backbone.eval()
    assert backbone.config.name == "vit_test"
    _assert_matches_transformers(model, backbone, [(64, 64)])


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [("dinov2", {"use_swiglu_ffn": True}), ("vit", {"layer_norm_eps": 1e-6})],
    ids=["dinov2-swiglu", "vit"],
)
def test_torch_saved_state_dict_in_memory_names(
    tmp_path: Path, kind: str, overrides: dict[str, Any]
) -> None:
    """``torch.save(model.state_dict())``: transformers 5 names tensors ``q_proj``, ``gate_proj``
    ... in memory (its files keep the older names); both read the same."""
    model = _hf_model(kind, **overrides)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    _assert_matches_transformers(model, dinokit.load(folder), [(32, 32)])


def test_repository_not_cached_is_downloaded_when_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download path: config, safetensors weights and image processor, nothing else."""
    import huggingface_hub

    model = _hf_model("dinov2_with_registers")
    model.save_pretrained(tmp_path / "remote")
    calls: list[tuple[str, list[str]]] = []

    def fake_snapshot_download(repo_id: str, *, allow_patterns: list[str], cache_dir: Path) -> str:
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "remote")

    monkeypatch.setattr("dinokit.models.weights.hub.network_available", lambda url: True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    backbone = dinokit.load("hf:someone/tiny-reg")
    assert calls == [
        ("someone/tiny-reg", ["config.json", "model.safetensors", "preprocessor_config.json"])
    ]
    assert backbone.source == str(tmp_path / "remote" / "model.safetensors")
    _assert_matches_transformers(model, backbone, [(32, 32)])
