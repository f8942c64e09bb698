"""The registry and the one door by name: registered names, timm:<name>, unknown names."""

from __future__ import annotations

import json

import pytest
import torch

import dinokit
from dinokit.models.config import BackboneConfig
from dinokit.models.registry import _REGISTRY, register
from tests.models.checkpoints import fail_on_network, images

OFFICIAL = {
    "dino_vits16": ("dino_deitsmall16_pretrain.pth", 384, 16),
    "dino_vits8": ("dino_deitsmall8_pretrain.pth", 384, 8),
    "dino_vitb16": ("dino_vitbase16_pretrain.pth", 768, 16),
    "dino_vitb8": ("dino_vitbase8_pretrain.pth", 768, 8),
    "dinov2_vits14": ("dinov2_vits14_pretrain.pth", 384, 14),
    "dinov2_vitb14": ("dinov2_vitb14_pretrain.pth", 768, 14),
    "dinov2_vitl14": ("dinov2_vitl14_pretrain.pth", 1024, 14),
    "dinov2_vitg14": ("dinov2_vitg14_pretrain.pth", 1536, 14),
    "dinov2_vits14_reg": ("dinov2_vits14_reg4_pretrain.pth", 384, 14),
    "dinov2_vitb14_reg": ("dinov2_vitb14_reg4_pretrain.pth", 768, 14),
    "dinov2_vitl14_reg": ("dinov2_vitl14_reg4_pretrain.pth", 1024, 14),
    "dinov2_vitg14_reg": ("dinov2_vitg14_reg4_pretrain.pth", 1536, 14),
}


def test_every_official_backbone_is_registered_with_its_file() -> None:
    names = dinokit.list_backbones()
    assert set(OFFICIAL) | {"vit_test"} <= set(names)
    for name, (file_name, dim, patch) in OFFICIAL.items():
        config = dinokit.get_config(name)
        assert config.weights is not None
        assert config.weights.file_name == file_name
        assert config.weights.url.startswith("https://dl.fbaipublicfiles.com/")
        assert config.weights.url.endswith("/" + file_name)
        assert (config.embed_dim, config.patch_size) == (dim, patch)
        assert config.reg_tokens == (4 if name.endswith("_reg") else 0)
        assert (config.layer_scale is not None) == name.startswith("dinov2")
        assert config.mlp == ("swiglu" if "vitg14" in name else "mlp")
    assert dinokit.get_config("vit_test").weights is None


@pytest.mark.parametrize("name", list(_REGISTRY))
def test_every_registered_config_round_trips_through_json(name: str) -> None:
    config = dinokit.get_config(name)
    assert BackboneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_config_from_dict_rejects_unknown_keys() -> None:
    data = dinokit.get_config("vit_test").to_dict() | {"embed_dims": 3}
    with pytest.raises(ValueError, match="embed_dims"):
        BackboneConfig.from_dict(data)


def test_architecture_labels() -> None:
    assert dinokit.get_config("dino_vits16").architecture == "ViT-S/16"
    assert dinokit.get_config("dinov2_vitg14_reg").architecture == "ViT-g/14+reg4"


def test_names_are_unique() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(dinokit.get_config("vit_test"))


@pytest.mark.parametrize("call", ["get_config", "create_backbone"])
def test_unknown_name_lists_the_valid_ones(call: str) -> None:
    with pytest.raises(ValueError, match="unknown backbone 'dino_vits32'") as info:
        getattr(dinokit, call)("dino_vits32")
    for name in dinokit.list_backbones():
        assert name in str(info.value)
    assert "timm:" in str(info.value)


def test_load_of_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(FileNotFoundError, match="dino_vits16"):
        dinokit.load("dino_vits32")


def test_weights_none_is_random_init_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DINOKIT_OFFLINE")
    fail_on_network(monkeypatch)
    backbone = dinokit.create_backbone("dino_vits16", weights="none")
    assert backbone.source == "random init"
    assert backbone.training  # create_backbone leaves training mode; load() sets eval
    assert dinokit.create_backbone("vit_test", weights="NONE").source == "random init"


def test_vit_test_without_official_weights_is_random_init() -> None:
    assert dinokit.create_backbone("vit_test").source == "random init"


def test_timm_vit_by_name() -> None:
    config = dinokit.get_config("timm:vit_tiny_patch16_224")
    assert (config.family, config.embed_dim, config.patch_size, config.depth) == (
        "timm",
        192,
        16,
        12,
    )
    assert config.num_heads == 3
    backbone = dinokit.create_backbone("timm:vit_tiny_patch16_224", weights="none").eval()
    assert backbone.config == config
    features = backbone.forward_features(images(1, 48, 80))
    assert features.cls.shape == (1, 192)
    assert features.patch_tokens.shape == (1, 3 * 5, 192)


def test_timm_non_vit_is_refused() -> None:
    with pytest.raises(ValueError, match="not a VisionTransformer"):
        dinokit.create_backbone("timm:resnet18", weights="none")


def test_timm_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown timm model"):
        dinokit.get_config("timm:vit_nonexistent_patch3")


def test_small_image_vit_has_the_cifar_shape() -> None:
    # 192-d, 6 blocks, 3 heads, 4 px patches: a 32 px image is an 8 x 8 grid of tokens.
    config = dinokit.get_config("vit_small32")
    assert (config.embed_dim, config.depth, config.num_heads, config.patch_size) == (192, 6, 3, 4)
    assert config.preprocessing.size == 32 and config.weights is None
    backbone = dinokit.create_backbone("vit_small32", weights="none")
    tokens = backbone.vit.patch_embed(torch.zeros(1, 3, 32, 32))
    assert tokens.shape == (1, 8, 8, 192)
