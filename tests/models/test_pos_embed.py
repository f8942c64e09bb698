"""Positional embeddings at other sizes follow each family's reference, in float32.

The references, written out below from their code:

* facebookresearch/dino ``vision_transformer.py``: ``prepare_tokens`` and
  ``interpolate_pos_encoding`` (bicubic by ``scale_factor=((w0 + 0.1) / sqrt(N), ...)``, no
  antialias, the stored table when ``npatch == N and w == h``);
* facebookresearch/dinov2 ``models/vision_transformer.py``: ``prepare_tokens_with_masks`` and
  ``interpolate_pos_encoding`` (float32; ``scale_factor`` with ``interpolate_offset`` or
  ``size`` without; ``antialias=interpolate_antialias``), with the values of
  ``dinov2/hub/backbones.py``: offset 0.1 / no antialias, and for ``_reg`` models offset 0 /
  antialias.

Both name the image height ``w`` (``B, nc, w, h = x.shape``); the code below keeps that.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

import dinokit
from dinokit.embed.model_record import fingerprint
from dinokit.models.backbone import Backbone, build_vit
from dinokit.models.config import BackboneConfig, reference_pos_embed_interp
from dinokit.models.pos_embed import resample_patch_pos_embed
from dinokit.models.weights.files import DINOKIT_METADATA_KEY
from tests.models.checkpoints import DinoV1Files, DinoV2File, images, random_backbone

# (interpolate_offset, interpolate_antialias) of each reference model.
DINO_V1 = (0.1, False)  # facebookresearch/dino: the +0.1 kludge, F.interpolate's default
DINOV2 = (0.1, False)  # dinov2/hub/backbones.py _make_dinov2_model defaults
DINOV2_REG = (0.0, True)  # dinov2/hub/backbones.py dinov2_vit*14_reg

# A global crop, a local crop (96 px; 98 = 7 x 14 for patch 14, dinokit's local size there)
# and a non-square image.
SIZES_16 = [(224, 224), (96, 96), (224, 320)]
SIZES_14 = [(224, 224), (98, 98), (224, 322)]


def reference_interpolate_pos_encoding(
    pos_embed: Tensor, npatch: int, w: int, h: int, patch: int, offset: float, antialias: bool
) -> Tensor:
    """``interpolate_pos_encoding`` of the references (``w`` is the image height)."""
    n = pos_embed.shape[1] - 1
    if npatch == n and w == h:
        return pos_embed
    pos_embed = pos_embed.float()
    class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    w0, h0 = w // patch, h // patch
    m = int(math.sqrt(n))
    kwargs: dict[str, object] = {}
    if offset:
        kwargs["scale_factor"] = (float(w0 + offset) / m, float(h0 + offset) / m)
    else:
        kwargs["size"] = (w0, h0)
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, m, m, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=antialias,
        **kwargs,  # type: ignore[arg-type]
    )
    assert (w0, h0) == patch_pos_embed.shape[-2:]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def reference_prepare_tokens(
    official: dict[str, Tensor], x: Tensor, *, offset: float, antialias: bool
) -> Tensor:
    """``prepare_tokens(_with_masks)`` of the references, from an official state dict."""
    _, _, w, h = x.shape
    weight = official["patch_embed.proj.weight"]
    patch = weight.shape[-1]
    tokens = F.conv2d(x, weight, official["patch_embed.proj.bias"], stride=patch)
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat((official["cls_token"].expand(x.shape[0], -1, -1), tokens), dim=1)
    pos = reference_interpolate_pos_encoding(
        official["pos_embed"], tokens.shape[1] - 1, w, h, patch, offset, antialias
    )
    tokens = tokens + pos
    if "register_tokens" in official:
        regs = official["register_tokens"].expand(x.shape[0], -1, -1)
        tokens = torch.cat((tokens[:, :1], regs, tokens[:, 1:]), dim=1)
    return tokens


def reference_cls(loaded: Backbone, official: dict[str, Tensor], x: Tensor, rule: tuple) -> Tensor:
    """The reference's CLS token: its token preparation, then the (shared) blocks and norm."""
    tokens = reference_prepare_tokens(official, x, offset=rule[0], antialias=rule[1])
    out: Tensor = loaded.vit.norm(loaded.vit.blocks(tokens))
    return out[:, 0]


def timm_antialiased_cls(backbone: Backbone, x: Tensor) -> Tensor:
    """The CLS token with timm's ``dynamic_img_size`` resampling (antialiased, exact size)."""
    vit = backbone.vit
    out: Tensor = vit.norm(vit.blocks(vit._pos_embed(vit.patch_embed(x))))
    return out[:, 0]


# --- the official files, at fp32 -------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES_16, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dino_v1_matches_the_reference_at_every_size(
    dino_vits16_files: DinoV1Files, size: tuple[int, int]
) -> None:
    official = torch.load(dino_vits16_files.backbone_pth, weights_only=True)
    loaded = dinokit.load(dino_vits16_files.backbone_pth)
    assert loaded.config.pos_embed_interp == "offset"
    x = images(2, *size, seed=size[1])
    with torch.inference_mode():  # fp32: no autocast anywhere here
        got = loaded(x)
        want = reference_cls(loaded, official, x, DINO_V1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", SIZES_14, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg"])
def test_dinov2_matches_the_reference_at_every_size(
    dinov2_vits14_file: DinoV2File,
    dinov2_vits14_reg_file: DinoV2File,
    size: tuple[int, int],
    registers: bool,
) -> None:
    file = dinov2_vits14_reg_file if registers else dinov2_vits14_file
    loaded = dinokit.load(file.path)
    assert loaded.config.pos_embed_interp == ("antialias" if registers else "offset")
    x = images(2, *size, seed=size[1])
    with torch.inference_mode():  # fp32
        got = loaded(x)
        want = reference_cls(loaded, file.official, x, DINOV2_REG if registers else DINOV2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(96, 96), (224, 320)], ids=["96", "224x320"])
def test_the_antialiased_resize_is_not_dinos(
    dino_vits16_files: DinoV1Files, size: tuple[int, int]
) -> None:
    """What dinokit computed before (timm's resize) differs from the reference's tokens."""
    official = torch.load(dino_vits16_files.backbone_pth, weights_only=True)
    loaded = dinokit.load(dino_vits16_files.backbone_pth)
    x = images(2, *size, seed=1)
    with torch.inference_mode():  # fp32
        want = reference_cls(loaded, official, x, DINO_V1)
        antialiased = timm_antialiased_cls(loaded, x)
    # 100 times the 1e-5 the reference is matched to above.
    assert (antialiased - want).abs().max() > 1e-3


# --- the rules themselves ---------------------------------------------------------------------


def _keys_cubic(t: float, a: float = -0.75) -> float:
    """The cubic convolution kernel PyTorch's bicubic uses (Keys, a = -0.75)."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def _by_hand(grid: np.ndarray, out_h: int, out_w: int, scale_h: float, scale_w: float) -> Any:
    """Separable bicubic by hand: output i samples input (i + 0.5) / scale - 0.5, borders
    clamped (align_corners=False, no antialias)."""
    m = grid.shape[0]

    def weights(n_out: int, scale: float) -> np.ndarray:
        mat = np.zeros((n_out, m))
        for i in range(n_out):
            src = (i + 0.5) / scale - 0.5
            base = math.floor(src)
            for k in range(base - 1, base + 3):
                mat[i, min(max(k, 0), m - 1)] += _keys_cubic(src - k)
        return mat

    return weights(out_h, scale_h) @ grid @ weights(out_w, scale_w).T


def test_offset_samples_where_dinos_scale_factor_puts_them() -> None:
    """DINO's rule resamples M x M to h x w at the scale (h + 0.1) / M, not h / M."""
    m, (h, w) = 5, (3, 7)
    grid = np.random.default_rng(0).normal(size=(m, m))
    table = torch.tensor(grid, dtype=torch.float32).reshape(1, m * m, 1)
    got = resample_patch_pos_embed(table, (h, w), interp="offset").reshape(h, w).numpy()
    want = _by_hand(grid, h, w, (h + 0.1) / m, (w + 0.1) / m)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    without_offset = _by_hand(grid, h, w, h / m, w / m)
    assert np.abs(got - without_offset).max() > 1e-2


def test_antialias_is_timms_resample() -> None:
    from timm.layers.pos_embed import resample_abs_pos_embed

    table = torch.randn(1, 37 * 37, 8, generator=torch.Generator().manual_seed(0))
    got = resample_patch_pos_embed(table, (16, 23), interp="antialias")
    want = resample_abs_pos_embed(table, new_size=(16, 23), num_prefix_tokens=0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert resample_patch_pos_embed(table, (37, 37), interp="offset") is table


def test_timm_family_backbones_keep_timms_path(vit_test: Backbone) -> None:
    assert vit_test.config.pos_embed_interp == "antialias"
    x = images(2, 40, 72)
    with torch.inference_mode():  # fp32
        torch.testing.assert_close(vit_test(x), timm_antialiased_cls(vit_test, x), rtol=0, atol=0)


# --- the rule travels with the model ---------------------------------------------------------


def _with_interp(config: BackboneConfig, interp: str) -> Backbone:
    torch.manual_seed(0)
    cfg = dataclasses.replace(config, pos_embed_interp=interp)  # type: ignore[arg-type]
    return Backbone(build_vit(cfg), cfg).eval()


def test_the_config_selects_the_rule_and_exports_keep_it(tmp_path) -> None:
    offset = _with_interp(dinokit.get_config("vit_test"), "offset")
    antialias = Backbone(build_vit(dinokit.get_config("vit_test")), dinokit.get_config("vit_test"))
    antialias.load_state_dict(offset.state_dict())
    x = images(1, 32, 48)
    with torch.inference_mode():  # fp32
        assert (offset(x) - antialias.eval()(x)).abs().max() > 1e-4
        # Attention maps and every token group go through the same rule.
        attn = offset.get_last_selfattention(x) - antialias.get_last_selfattention(x)
        assert attn.abs().max() > 1e-5
        a, b = offset.forward_features(x), antialias.forward_features(x)
        assert (a.patch_tokens - b.patch_tokens).abs().max() > 1e-4
        path = dinokit.save_backbone(offset, tmp_path / "m.safetensors")
        again = dinokit.load(path)
        assert again.config.pos_embed_interp == "offset"
        torch.testing.assert_close(again(x), offset(x), rtol=0, atol=0)
    # Embeddings made with one rule are not taken for the other's (dinokit embed's reuse).
    assert fingerprint(offset) != fingerprint(antialias)


def test_files_written_before_the_rule_get_their_familys(tmp_path) -> None:
    dino_like = dataclasses.replace(dinokit.get_config("vit_test"), family="dino")
    path = dinokit.save_backbone(Backbone(build_vit(dino_like), dino_like), tmp_path / "a.st")
    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()[DINOKIT_METADATA_KEY])
    assert meta["backbone"].pop("pos_embed_interp") == "antialias"
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata={DINOKIT_METADATA_KEY: json.dumps(meta)})
    assert dinokit.load(old).config.pos_embed_interp == "offset"


def test_an_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pos_embed_interp 'nearest'"):
        dataclasses.replace(dinokit.get_config("vit_test"), pos_embed_interp="nearest")  # type: ignore[arg-type]


def test_bf16_autocast_keeps_the_positions_in_float32() -> None:
    """At bf16 (autocast, as training and embedding run), the table is resampled in float32
    and the CLS token stays within bf16's rounding of the fp32 one (cosine >= 0.999)."""
    backbone = _with_interp(dinokit.get_config("vit_test"), "offset")
    x = images(2, 40, 56)
    with torch.inference_mode():
        fp32 = backbone(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert backbone._embed(x)[0].dtype == torch.float32  # positions added in float32
            bf16 = backbone(x).float()
    assert F.cosine_similarity(fp32, bf16).min() >= 0.999


def test_registered_backbones_use_their_references_rule() -> None:
    names = ("dino_vits16", "dino_vitb8", "dinov2_vitl14", "dinov2_vitg14_reg")
    rules = {name: dinokit.get_config(name).pos_embed_interp for name in names}
    assert rules == {
        "dino_vits16": "offset",
        "dino_vitb8": "offset",
        "dinov2_vitl14": "offset",
        "dinov2_vitg14_reg": "antialias",
    }
    assert random_backbone("vit_test", seed=0).config.pos_embed_interp == "antialias"
    # The rule files written before it existed are given agrees with the registry.
    for name in dinokit.list_backbones():
        config = dinokit.get_config(name)
        expected = reference_pos_embed_interp(config.family, config.reg_tokens)
        assert config.pos_embed_interp == expected, name
