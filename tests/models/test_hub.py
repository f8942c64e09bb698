"""Official weights offline first: torch hub cache, HF cache, a fast clear error otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import dinokit
from dinokit.models.weights import OfflineWeightsError, find_local_weights
from dinokit.models.weights.hub import resolve_official_weights
from tests.models.checkpoints import Caches, DinoV1Files, fail_on_network, images

DINO_S16_FILE = "dino_deitsmall16_pretrain.pth"
DINO_S16_URL = (
    "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
)


def _assert_offline_error(error: OfflineWeightsError, caches: Caches) -> None:
    message = str(error)
    assert DINO_S16_FILE in message
    assert DINO_S16_URL in message
    assert str(caches.hub_checkpoints) in message
    assert "--weights" in message


def test_offline_env_gives_a_fast_clear_error(
    offline_caches: Caches, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fast by construction: offline mode must not even try to connect.
    def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("offline mode tried to connect")

    monkeypatch.setattr("dinokit.models.weights.hub.socket.create_connection", no_connection)
    monkeypatch.setattr("dinokit.models.weights.hub.urllib.request.urlopen", no_connection)
    with pytest.raises(OfflineWeightsError) as info:
        dinokit.create_backbone("dino_vits16")
    _assert_offline_error(info.value, offline_caches)
    assert isinstance(info.value, FileNotFoundError)


def test_no_network_gives_the_same_error_fast(
    offline_caches: Caches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DINOKIT_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    attempts: list[object] = []

    def unreachable(address: object, *args: object, **kwargs: object) -> None:
        attempts.append(address)
        raise OSError("Network is unreachable")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was started after the connection probe failed")

    monkeypatch.setattr("dinokit.models.weights.hub.socket.create_connection", unreachable)
    monkeypatch.setattr("dinokit.models.weights.hub.urllib.request.urlopen", no_download)
    with pytest.raises(OfflineWeightsError) as info:
        dinokit.create_backbone("dino_vits16")
    # Fast by construction: one short connection probe, no download attempt.
    assert attempts == [("dl.fbaipublicfiles.com", 443)]
    _assert_offline_error(info.value, offline_caches)


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_offline_env_values(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DINOKIT_OFFLINE", value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fail_on_network(monkeypatch)
    with pytest.raises(OfflineWeightsError):
        resolve_official_weights(dinokit.get_config("dino_vits16"))


@pytest.mark.parametrize(
    "name", [n for n in dinokit.list_backbones() if dinokit.get_config(n).weights]
)
def test_every_offline_error_names_its_file_and_url(name: str, offline_caches: Caches) -> None:
    config = dinokit.get_config(name)
    assert config.weights is not None
    with pytest.raises(OfflineWeightsError) as info:
        resolve_official_weights(config)
    assert config.weights.file_name in str(info.value)
    assert config.weights.url in str(info.value)
    assert str(offline_caches.hub_checkpoints) in str(info.value)


def _place(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def test_torch_hub_cache_is_used_without_network(
    dino_vits16_files: DinoV1Files, offline_caches: Caches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DINOKIT_OFFLINE")
    fail_on_network(monkeypatch)
    cached = offline_caches.hub_checkpoints / DINO_S16_FILE
    _place(cached, dino_vits16_files.backbone_pth)
    assert find_local_weights(dinokit.get_config("dino_vits16")) == cached

    backbone = dinokit.create_backbone("dino_vits16").eval()
    assert backbone.source == str(cached)
    x = images(1, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(backbone(x), dino_vits16_files.teacher(x), rtol=0, atol=0)


def test_hf_cache_is_used_without_network(
    dino_vits16_files: DinoV1Files, offline_caches: Caches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DINOKIT_OFFLINE")
    fail_on_network(monkeypatch)
    repo = offline_caches.hf_cache / "models--timm--vit_small_patch16_224.dino"
    cached = repo / "snapshots" / "abc" / "model.safetensors"
    _place(cached, dino_vits16_files.safetensors)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")

    backbone = dinokit.create_backbone("dino_vits16").eval()
    assert backbone.source == str(cached)
    x = images(1, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(backbone(x), dino_vits16_files.teacher(x), rtol=0, atol=0)


def test_torch_hub_cache_wins_over_hf_cache(offline_caches: Caches) -> None:
    hub = offline_caches.hub_checkpoints / DINO_S16_FILE
    hf = (
        offline_caches.hf_cache
        / "models--timm--vit_small_patch16_224.dino/snapshots/a/model.safetensors"
    )
    for path in (hub, hf):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert find_local_weights(dinokit.get_config("dino_vits16")) == hub


def test_timm_backbone_offline_error_names_the_hf_repo() -> None:
    config = dinokit.get_config("timm:vit_tiny_patch16_224")
    assert config.weights is not None and config.weights.hf_repo
    with pytest.raises(OfflineWeightsError, match=config.weights.hf_repo):
        resolve_official_weights(config)
