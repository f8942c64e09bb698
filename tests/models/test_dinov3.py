"""DINOv3 backbones equal the reference forward, from official files, at every input size.

The reference, written out below from facebookresearch/dinov3 (float32 throughout):

* ``layers/rope_position_encoding.py`` ``RopePositionEmbedding.forward`` with the hub values
  (``normalize_coords="separate"``, eval mode so no shift/jitter/rescale): coordinates
  ``arange(0.5, H) / H`` and ``arange(0.5, W) / W`` on an ``ij`` mesh, mapped by ``2c - 1``,
  angles ``2 pi c / periods`` flattened (h, then w) and tiled twice; ``periods`` is the
  buffer loaded from the file;
* ``layers/attention.py``: ``rope_apply(x) = x cos + rotate_half(x) sin`` on the patch
  tokens' q and k only (``rotate_half`` = ``[-x2, x1]``), ``LinearKMaskedBias`` bias times
  ``bias_mask``, ``scaled_dot_product_attention``;
* ``layers/block.py`` ``SelfAttentionBlock`` (pre-norm, LayerScale), ``layers/ffn_layers.py``
  ``Mlp`` (exact GELU) and ``SwiGLUFFN`` (``silu(w1 x) * w2 x`` then ``w3``);
* ``models/vision_transformer.py``: tokens ``[cls, storage, patches]``, LayerNorm eps 1e-5
  (``layernormbf16``), one final norm for every token (hub models do not untie the norms).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import dinokit
from dinokit.models.backbone import Backbone
from dinokit.models.dinov3 import rope_periods
from dinokit.models.export import save_backbone
from dinokit.models.registry import get_config, list_backbones
from dinokit.models.weights.files import read_weights
from dinokit.models.weights.hub import OfflineWeightsError
from tests.models.checkpoints import (
    Caches,
    dinov3_official_state,
    images,
    write_dinov3_pth,
)

StateDict = dict[str, Tensor]
EPS = 1e-5


def _rope(periods: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    coords_h = torch.arange(0.5, h, dtype=torch.float32) / h
    coords_w = torch.arange(0.5, w, dtype=torch.float32) / w
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
    coords = 2.0 * coords - 1.0
    angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]
    angles = angles.flatten(1, 2).tile(2)
    return torch.sin(angles), torch.cos(angles)


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def reference_forward(sd: StateDict, x: Tensor, *, heads: int) -> dict[str, Tensor]:
    """DinoVisionTransformer.forward_features of an official state dict (eval, float32)."""
    sd = {k: v.float() for k, v in sd.items()}
    p = sd["patch_embed.proj.weight"].shape[-1]
    d = sd["cls_token"].shape[-1]
    tokens = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    b, _, h, w = tokens.shape
    tokens = tokens.flatten(2).transpose(1, 2)
    regs = sd["storage_tokens"]
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), regs.expand(b, -1, -1), tokens], dim=1)
    sin, cos = _rope(sd["rope_embed.periods"], h, w)
    prefix = 1 + regs.shape[1]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        g = {k[len(f"blocks.{i}.") :]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        y = F.layer_norm(t, (d,), g["norm1.weight"], g["norm1.bias"], EPS)
        bias = g["attn.qkv.bias"] * g["attn.qkv.bias_mask"]
        qkv = F.linear(y, g["attn.qkv.weight"], bias).reshape(b, -1, 3, heads, d // heads)
        q, k, v = (u.transpose(1, 2) for u in torch.unbind(qkv, 2))
        q = torch.cat(
            [q[:, :, :prefix], q[:, :, prefix:] * cos + _rotate_half(q[:, :, prefix:]) * sin], 2
        )
        k = torch.cat(
            [k[:, :, :prefix], k[:, :, prefix:] * cos + _rotate_half(k[:, :, prefix:]) * sin], 2
        )
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, d)
        attn = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(-1)  # sdpa's weights
        t = t + g["ls1.gamma"] * F.linear(a, g["attn.proj.weight"], g["attn.proj.bias"])
        y = F.layer_norm(t, (d,), g["norm2.weight"], g["norm2.bias"], EPS)
        if "mlp.w1.weight" in g:
            hidden = F.silu(F.linear(y, g["mlp.w1.weight"], g["mlp.w1.bias"])) * F.linear(
                y, g["mlp.w2.weight"], g["mlp.w2.bias"]
            )
            y = F.linear(hidden, g["mlp.w3.weight"], g["mlp.w3.bias"])
        else:
            y = F.gelu(F.linear(y, g["mlp.fc1.weight"], g["mlp.fc1.bias"]))
            y = F.linear(y, g["mlp.fc2.weight"], g["mlp.fc2.bias"])
        t = t + g["ls2.gamma"] * y
    t = F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], EPS)
    return {"cls": t[:, 0], "registers": t[:, 1:prefix], "patches": t[:, prefix:], "attn": attn}


@pytest.fixture(scope="module")
def vits16_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StateDict]:
    config = get_config("dinov3_vits16")
    assert config.weights is not None
    path = tmp_path_factory.mktemp("dinov3") / config.weights.file_name
    return path, write_dinov3_pth(path, config, seed=0)


@cache
def _loaded(path: Path) -> Backbone:
    """The file's backbone, built once for the sizes below (read only)."""
    return dinokit.load(path)


@pytest.mark.parametrize("size", [(224, 224), (96, 96), (224, 320)])
def test_official_file_matches_reference(
    vits16_file: tuple[Path, StateDict], size: tuple[int, int]
) -> None:
    """float32: CLS, patch and register tokens within 1e-4 of the reference at each size."""
    path, sd = vits16_file
    backbone = _loaded(path)
    assert backbone.config.name == "dinov3_vits16"
    x = images(2, *size, seed=1)
    with torch.no_grad():
        ours = backbone.forward_features(x)
        ref = reference_forward(sd, x, heads=6)
        cls = backbone(x)
    torch.testing.assert_close(ours.cls, ref["cls"], atol=1e-4, rtol=0)
    torch.testing.assert_close(cls, ref["cls"], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.patch_tokens, ref["patches"], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.register_tokens, ref["registers"], atol=1e-4, rtol=0)
    assert ours.grid == (size[0] // 16, size[1] // 16)


def test_swiglu_and_sat_file_match_reference(tmp_path: Path) -> None:
    """float32: a SwiGLU model (test size) and the SAT-493M extras (``local_cls_norm``)."""
    config = get_config("dinov3_test")
    sd = dinov3_official_state(config, seed=3, local_cls_norm=True)
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    backbone = dinokit.load("dinov3_test", weights=path)
    x = images(2, 48, 80, seed=2)
    with torch.no_grad():
        ours = backbone.forward_features(x)
    ref = reference_forward(sd, x, heads=config.num_heads)
    torch.testing.assert_close(ours.cls, ref["cls"], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.patch_tokens, ref["patches"], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.register_tokens, ref["registers"], atol=1e-4, rtol=0)


def test_file_periods_are_used(tmp_path: Path) -> None:
    """The reference loads ``rope_embed.periods`` from the file; so does dinokit (float32)."""
    config = get_config("dinov3_test")
    sd = dinov3_official_state(config, seed=4)
    sd["rope_embed.periods"] = sd["rope_embed.periods"].float() * 1.5
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    backbone = dinokit.load("dinov3_test", weights=path)
    x = images(1, 64, 64, seed=0)
    with torch.no_grad():
        ours = backbone.forward_features(x)
    ref = reference_forward(sd, x, heads=config.num_heads)
    torch.testing.assert_close(ours.patch_tokens, ref["patches"], atol=1e-4, rtol=0)


def test_official_layout_recognised(vits16_file: tuple[Path, StateDict]) -> None:
    path, _ = vits16_file
    assert read_weights(path).layout == "dinov3"


def test_sat_file_name_selects_sat_preprocessing() -> None:
    """The official name of the SAT-493M ViT-L/16 file picks that model and its statistics."""
    from dinokit.models.factory import infer_config
    from dinokit.models.weights.files import WeightsFile

    config = get_config("dinov3_vitl16_sat")
    assert config.weights is not None
    assert config.preprocessing.mean == (0.430, 0.411, 0.296)  # dinov3 README, SAT-493M
    assert config.preprocessing.std == (0.213, 0.156, 0.143)
    found = infer_config(WeightsFile(Path(config.weights.file_name), "dinov3", {}))
    assert found is config


def test_key_bias_must_be_masked(tmp_path: Path) -> None:
    sd = dinov3_official_state(get_config("dinov3_test"), seed=0)
    sd["blocks.0.attn.qkv.bias_mask"] = torch.ones_like(sd["blocks.0.attn.qkv.bias_mask"])
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match="key bias is not masked"):
        dinokit.load("dinov3_test", weights=path)


def test_timm_file_and_dinokit_export_reload(tmp_path: Path) -> None:
    """float32: timm's layout (no periods, no q/v bias) and dinokit's export load exactly."""
    config = get_config("dinov3_test")
    sd = dinov3_official_state(config, seed=5)
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    backbone = dinokit.load("dinov3_test", weights=path)
    x = images(1, 64, 64, seed=0)
    exported = tmp_path / "export.safetensors"
    save_backbone(backbone, exported)
    again = dinokit.load(exported)
    with torch.no_grad():
        torch.testing.assert_close(again(x), backbone(x), atol=0, rtol=0)
    # timm's own files: no rope.periods (timm computes them: the formula, in float32) and no
    # q/v bias (zero).
    with torch.no_grad():
        backbone.vit.rope.periods.copy_(rope_periods(config.embed_dim // config.num_heads))
        for name, param in backbone.vit.named_parameters():
            if name.endswith(("q_bias", "v_bias")):
                param.zero_()
    timm_state = {
        k: v for k, v in backbone.vit.state_dict().items() if not k.endswith(("q_bias", "v_bias"))
    }
    timm_state.pop("rope.periods")
    timm_path = tmp_path / "timm" / "model.safetensors"
    timm_path.parent.mkdir()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in timm_state.items()}, str(timm_path))
    from_timm = dinokit.load("dinov3_test", weights=timm_path)
    with torch.no_grad():
        torch.testing.assert_close(from_timm(x), backbone(x), atol=0, rtol=0)


def test_attention_maps_are_the_reference_weights_without_registers(tmp_path: Path) -> None:
    """float32: last-block weights equal the reference's; the maps keep the patch columns."""
    from dinokit.viz.attention import cls_attention

    config = get_config("dinov3_test")
    sd = dinov3_official_state(config, seed=6)
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    backbone = dinokit.load("dinov3_test", weights=path)
    x = images(1, 64, 96, seed=0)
    with torch.no_grad():
        attn = backbone.get_last_selfattention(x)
        maps = cls_attention(backbone, x)
    ref = reference_forward(sd, x, heads=config.num_heads)["attn"]
    assert attn.shape == (1, 4, 5 + 8 * 12, 5 + 8 * 12)
    torch.testing.assert_close(attn, ref, atol=1e-5, rtol=0)
    cls_to_patches = ref[:, :, 0, 5:] / ref[:, :, 0, 5:].sum(-1, keepdim=True)
    torch.testing.assert_close(maps, cls_to_patches.reshape(1, 4, 8, 12), atol=1e-5, rtol=0)


def test_missing_official_file_says_how_to_obtain_it() -> None:
    config = get_config("dinov3_vits16")
    with pytest.raises(OfflineWeightsError) as err:
        dinokit.create_backbone("dinov3_vits16")
    message = str(err.value)
    assert config.weights is not None
    assert config.weights.file_name in message
    assert "hub/checkpoints" in message
    assert "licence form" in message and "facebookresearch/dinov3" in message


def test_registered_names_and_licence() -> None:
    names = [n for n in list_backbones() if n.startswith("dinov3_vit")]
    assert names == [
        "dinov3_vits16",
        "dinov3_vits16plus",
        "dinov3_vitb16",
        "dinov3_vitl16",
        "dinov3_vitl16plus",
        "dinov3_vith16plus",
        "dinov3_vit7b16",
        "dinov3_vitl16_sat",
        "dinov3_vit7b16_sat",
    ]
    for name in names:
        weights = get_config(name).weights
        assert weights is not None and weights.licence == "DINOv3 License"
    # dinov3/hub/backbones.py file names (pattern + hash).
    vits = get_config("dinov3_vits16").weights
    assert vits is not None
    assert vits.file_name == "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
    sat = get_config("dinov3_vit7b16_sat").weights
    assert sat is not None and sat.file_name == "dinov3_vit7b16_pretrain_sat493m-a6675841.pth"


def test_models_table_gives_licence_and_weight_memory() -> None:
    """The 7B model is listed without building it: 6.7 B parameters, 4 bytes each in fp32."""
    from dinokit.models.summary import describe_backbones

    (row,) = describe_backbones(["dinov3_vit7b16"])
    assert row["licence"] == "DINOv3 License"
    assert 6.6e3 < row["params_m"] < 6.8e3  # "ViT-7B": 6,716 M with this architecture
    assert row["fp32_gb"] == round(row["params_m"] * 1e6 * 4 / 1e9, 2)


@pytest.mark.slow
def test_timm_export_loads_into_timms_dinov3_model(
    vits16_file: tuple[Path, StateDict], tmp_path: Path
) -> None:
    """float32: timm's own ``vit_small_patch16_dinov3_qkvb`` reads the timm export exactly."""
    import timm

    path, _ = vits16_file
    out = tmp_path / "timm.safetensors"
    dinokit.export(path, out, format="timm")
    model = timm.create_model(
        "vit_small_patch16_dinov3_qkvb",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(out)},
        global_pool="token",
        num_classes=0,
    ).eval()
    backbone = dinokit.load(path)
    with torch.no_grad():  # timm computes the periods by the formula; the file had bf16 ones
        backbone.vit.rope.periods.copy_(rope_periods(64))
        x = images(1, 224, 224, seed=3)
        torch.testing.assert_close(model(x), backbone(x), atol=1e-5, rtol=0)


def test_transformers_dinov3_folder_matches_transformers(tmp_path: Path) -> None:
    """float32: a ``DINOv3ViTModel`` folder loads as ``dinov3_test``; tokens equal its own."""
    transformers = pytest.importorskip("transformers")
    config = transformers.DINOv3ViTConfig(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=176,  # dinov3_test's SwiGLU width: int(2/3 * 256) aligned to 8
        patch_size=8,
        image_size=64,
        num_register_tokens=4,
        use_gated_mlp=True,
        hidden_act="silu",
    )
    torch.manual_seed(0)
    model = transformers.DINOv3ViTModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(tmp_path / "hf")
    backbone = dinokit.load(tmp_path / "hf")
    assert backbone.config.name == "dinov3_test"
    x = images(2, 64, 96, seed=4)
    with torch.no_grad():
        theirs = model(pixel_values=x).last_hidden_state
        ours = backbone.forward_features(x)
    torch.testing.assert_close(ours.cls, theirs[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.register_tokens, theirs[:, 1:5], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.patch_tokens, theirs[:, 5:], atol=1e-4, rtol=0)


def test_transformers_dinov3_key_bias_is_refused() -> None:
    from dinokit.models.weights.hf_dinov3 import hf_dinov3_to_official

    d = 8
    sd = {
        "embeddings.register_tokens": torch.zeros(1, 4, d),
        **{f"layer.0.attention.{n}_proj.weight": torch.zeros(d, d) for n in "qkv"},
        "layer.0.attention.k_proj.bias": torch.ones(d),
    }
    with pytest.raises(ValueError, match="key bias"):
        hf_dinov3_to_official(sd, source="model.safetensors")


def test_a_cast_keeps_the_files_periods_in_float32(tmp_path: Path) -> None:
    """bf16 weights: the RoPE periods stay the file's float32 values and in the state dict."""
    sd = dinov3_official_state(get_config("dinov3_test"), seed=7)
    sd["rope_embed.periods"] = sd["rope_embed.periods"].float() * 1.5
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    backbone = dinokit.load("dinov3_test", weights=path).to(torch.bfloat16)
    periods = backbone.vit.state_dict()["rope.periods"]
    assert periods.dtype == torch.float32
    torch.testing.assert_close(periods, sd["rope_embed.periods"], atol=0, rtol=0)


@pytest.mark.parametrize(
    ("local_norm", "expected"), [(False, "dinov3_vitl16"), (True, "dinov3_vitl16_sat")]
)
def test_renamed_vitl16_file_is_told_apart_by_its_local_norm(
    local_norm: bool, expected: str
) -> None:
    """Only the SAT-493M ViT-L/16 unties the local-crop norm (dinov3/hub/backbones.py)."""
    from dinokit.models.factory import infer_config
    from dinokit.models.weights.files import WeightsFile

    def shaped(*shape: int) -> Tensor:  # the shape only: no memory for ViT-L's tensors
        return torch.zeros(1).expand(*shape)

    sd = {
        "cls_token": shaped(1, 1, 1024),
        "storage_tokens": shaped(1, 4, 1024),
        "patch_embed.proj.weight": shaped(1024, 3, 16, 16),
        **{f"blocks.{i}.ls1.gamma": shaped(1024) for i in range(24)},
    }
    if local_norm:
        sd["local_cls_norm.weight"] = shaped(1024)
    config = infer_config(WeightsFile(Path("renamed.pth"), "dinov3", sd))
    assert config.name == expected


def test_timm_copy_in_the_hugging_face_cache_is_found(offline_caches: Caches) -> None:
    """float32: ``timm/vit_small_patch16_dinov3.lvd1689m`` in the HF cache, no network."""
    from safetensors.torch import save_file

    source = dinokit.create_backbone("dinov3_vits16", weights="none").eval()
    with torch.no_grad():  # timm's model of this name has no q/v bias; its periods: the formula
        for name, param in source.vit.named_parameters():
            if name.endswith(("q_bias", "v_bias")):
                param.zero_()
    state = {
        k: v.contiguous()
        for k, v in source.vit.state_dict().items()
        if not k.endswith(("q_bias", "v_bias", "rope.periods"))
    }
    snapshot = offline_caches.hf_cache / "models--timm--vit_small_patch16_dinov3.lvd1689m"
    path = snapshot / "snapshots" / "0123" / "model.safetensors"
    path.parent.mkdir(parents=True)
    save_file(state, str(path))
    backbone = dinokit.load("dinov3_vits16")
    assert backbone.source == str(path)
    x = images(1, 96, 128, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), source(x), atol=0, rtol=0)
