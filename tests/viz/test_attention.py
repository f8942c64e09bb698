"""Attention maps: normalisation, the reference's mass threshold, sizes, files and the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinokit.cli import main
from dinokit.models.backbone import Backbone
from dinokit.models.registry import _REGISTRY
from dinokit.viz.attention import (
    attention,
    attention_maps,
    cls_attention,
    fit_to_patches,
    mass_threshold,
)
from tests.models.checkpoints import TINY_DINOV2_REG, images, random_backbone


def _photo(path: Path, width: int, height: int, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_maps_sum_to_one_per_head_and_match_the_attention(vit_test: Backbone) -> None:
    x = images(2, 48, 64)
    maps = cls_attention(vit_test, x)
    assert maps.shape == (2, 4, 6, 8)
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, 4))
    with torch.inference_mode():
        attn = vit_test.get_last_selfattention(x)
    row = attn[1, 2, 0, 1:]  # image 1, head 3: CLS query over the 48 patches
    torch.testing.assert_close(maps[1, 2].flatten(), row / row.sum())


def test_register_tokens_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_REGISTRY, TINY_DINOV2_REG.name, TINY_DINOV2_REG)
    backbone = random_backbone(TINY_DINOV2_REG.name, seed=1)
    x = images(1, 32, 40)
    maps = cls_attention(backbone, x)
    assert maps.shape == (1, 4, 4, 5)
    with torch.inference_mode():
        attn = backbone.get_last_selfattention(x)
    assert attn.shape[-1] == 1 + 4 + 20
    patches = attn[0, 0, 0, 5:]
    torch.testing.assert_close(maps[0, 0].flatten(), patches / patches.sum())


@pytest.mark.parametrize("share", [0.1, 0.6, 0.9, 1.0])
def test_threshold_keeps_the_stated_share(share: float) -> None:
    """Kept mass >= share, and < share once its smallest value is removed (minimal set)."""
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(6, 200, generator=gen) ** 4  # peaked, like attention
    maps = maps / maps.sum(dim=-1, keepdim=True)
    kept = mass_threshold(maps, share)
    for values, mask in zip(maps, kept, strict=True):
        mass = float(values[mask].sum())
        assert mass >= share - 1e-6
        assert mass - float(values[mask].min()) < share
        # The kept positions are the largest values.
        if not mask.all():
            assert float(values[mask].min()) >= float(values[~mask].max())


def test_threshold_of_unnormalised_maps_and_bad_shares() -> None:
    maps = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # mass 0.1, 0.2, 0.3, 0.4
    assert mass_threshold(maps, 0.6).tolist() == [[False, False, True, True]]
    assert mass_threshold(maps, 0.75).tolist() == [[False, True, True, True]]
    for share in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            mass_threshold(maps, share)


@pytest.mark.parametrize(("width", "height"), [(100, 70), (70, 100), (64, 64), (500, 60)])
def test_images_are_cropped_to_the_patch_grid(width: int, height: int) -> None:
    fitted = fit_to_patches(Image.new("RGB", (width, height)), 60, 8, Image.Resampling.BICUBIC)
    w, h = fitted.size
    assert w % 8 == 0 and h % 8 == 0
    assert min(w, h) > 60 - 8 or max(w, h) >= 2 * 60 - 8  # short side ~ size unless capped
    assert max(w, h) <= 2 * 60


def test_maps_match_the_image_and_keep_their_mass(vit_test: Backbone, tmp_path: Path) -> None:
    image = Image.open(_photo(tmp_path / "a.png", 90, 70))
    maps = attention_maps(vit_test, image, size=64, threshold=0.6)
    h, w = maps.image.shape[:2]
    assert (h, w) == (64, 80)  # short side 70 -> 64, long side 90 * 64 / 70 = 82 -> 80
    assert maps.heads.shape == (4, h, w)
    assert maps.heads.dtype == np.float32
    np.testing.assert_allclose(maps.heads.sum(axis=(1, 2)), np.ones(4), rtol=1e-5)
    assert maps.mean.shape == (h, w)
    assert maps.masks is not None and maps.masks.shape == (4, h, w)
    assert maps.mean_mask is not None and maps.mean_mask.shape == (h, w)
    for values, mask in zip(maps.heads, maps.masks, strict=True):
        assert float(values[mask].sum()) >= 0.6 - 1e-5
        # Masks follow the patch grid: constant over each 8 x 8 patch.
        assert (mask.reshape(h // 8, 8, w // 8, 8).std(axis=(1, 3)) == 0).all()
    assert float(maps.mean[maps.mean_mask].sum()) >= 0.6 - 1e-5
    assert attention_maps(vit_test, image, size=64).masks is None


def test_attention_writes_files_and_skips_unreadable_images(
    vit_test: Backbone, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = _photo(tmp_path / "in" / "cat.png", 80, 64)
    other = _photo(tmp_path / "in" / "sub" / "cat.jpg", 64, 96, seed=1)  # same stem
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    result = attention(vit_test, [good, other, broken], out=out, size=64, threshold=0.5)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "cat-2.npy",
        "cat-2.png",
        "cat-2_mask.npy",
        "cat.npy",
        "cat.png",
        "cat_mask.npy",
    ]
    assert sorted(result.written) == sorted(out / n for n in names)
    assert result.skipped == [(str(broken), "not an image (format not recognised)")]
    skipped_lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped_lines) == 1 and "\n" not in skipped_lines[0]
    assert str(broken) in skipped_lines[0]

    heads = np.load(out / "cat.npy")
    masks = np.load(out / "cat_mask.npy")
    grid = Image.open(out / "cat.png")
    assert heads.shape == masks.shape == (4, 64, 80)
    assert masks.dtype == np.bool_
    # image + mean + 4 heads: 4 panels on the first row, 2 on the second.
    assert grid.size[0] > 4 * 80 and grid.size[1] > 2 * 64
    assert np.load(out / "cat-2.npy").shape == (4, 96, 64)


def test_mean_only_grid_is_smaller(vit_test: Backbone, tmp_path: Path) -> None:
    path = _photo(tmp_path / "x.png", 64, 64)
    attention(vit_test, [path], out=tmp_path / "all", size=64)
    attention(vit_test, [path], out=tmp_path / "mean", size=64, heads="mean")
    full = Image.open(tmp_path / "all" / "x.png").size
    mean_only = Image.open(tmp_path / "mean" / "x.png").size
    assert mean_only[0] < full[0] and mean_only[1] < full[1]
    assert np.load(tmp_path / "mean" / "x.npy").shape == (4, 64, 64)  # every head, always
    assert not (tmp_path / "mean" / "x_mask.npy").exists()


def test_no_readable_image_is_an_error(vit_test: Backbone, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ValueError, match="none of the 1 images"):
        attention(vit_test, [empty], out=tmp_path / "out")


def test_attention_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dinokit import save_backbone

    model = save_backbone(random_backbone("vit_test", seed=3), tmp_path / "m.safetensors")
    folder = tmp_path / "photos"
    _photo(folder / "a.png", 72, 72)
    _photo(folder / "b.jpg", 96, 72, seed=2)
    (folder / "c.jpg").write_bytes(b"")
    out = tmp_path / "attn"
    argv = ["attention", "--model", str(model), str(folder / "a.png"), str(folder / "b.jpg")]
    argv += [str(folder / "c.jpg"), "--out", str(out), "--size", "64", "--threshold", "0.6"]
    assert main(argv) == 0
    assert "2 images" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]
    assert np.load(out / "b.npy").shape == (4, 64, 80)  # 96 x 72 -> 85 x 64 -> 80 x 64
    assert main(["attention", "--model", str(model), str(folder), "--out", str(out / "dir")]) == 0
    assert len(list((out / "dir").glob("*.png"))) == 2  # a folder: its readable images
    with pytest.raises(SystemExit):
        main([*argv, "--threshold", "1.5"])
