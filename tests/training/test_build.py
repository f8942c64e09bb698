"""Building the networks of a run: weights, DINO head and centre, teacher, head warm-up.

Official DINO files are written by :mod:`tests.models.checkpoints` (exact key layout of
facebookresearch/dino ``main_dino.py``), with small heads so that a run takes a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from dinokit.dino.head import DINOHead
from dinokit.training import train
from dinokit.training.resolve import auto_out_dim
from tests.models.checkpoints import (
    DinoFullCheckpoint,
    legacy_head_state,
    random_backbone,
    write_dino_backbone_pth,
    write_dino_full_checkpoint,
)
from tests.training.test_run import (
    STEPS_PER_EPOCH,
    Built,
    build,
    fast_training,
    image_folder,
    last_checkpoint,
    resolve,
    tiny_config,
)

__all__ = ["fast_training", "image_folder"]  # shared fixtures

HEAD = {"hidden_dim": 48, "bottleneck_dim": 16}
K = 64
LAST_LAYER = (
    "last_layer.parametrizations.weight.original0",
    "last_layer.parametrizations.weight.original1",
)


def small_head(seed: int) -> DINOHead:
    """A trained-looking head: random MLP, per-prototype norms g != 1 (learned)."""
    torch.manual_seed(seed)
    head = DINOHead(64, K, **HEAD)
    with torch.no_grad():
        for param in head.mlp.parameters():
            param.normal_(0.0, 0.05)
        head.last_layer_g.uniform_(0.5, 2.0)
    return head.eval()


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> DinoFullCheckpoint:
    """An official DINO full checkpoint of ``vit_test`` (student != teacher)."""
    student, teacher = random_backbone("vit_test", seed=1), random_backbone("vit_test", seed=2)
    return write_dino_full_checkpoint(
        tmp_path_factory.mktemp("full") / "checkpoint.pth",
        student.vit,
        teacher.vit,
        K,
        student_head=small_head(3),
        teacher_head=small_head(4),
    )


def file_backbone(checkpoint: DinoFullCheckpoint, branch: str = "teacher") -> dict[str, Tensor]:
    state = torch.load(checkpoint.path, weights_only=False)[branch]
    prefix = "module.backbone." if branch == "student" else "backbone."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def assert_state_equal(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def networks(**overrides: Any) -> Built:
    return build(tiny_config("unused", "unused", **overrides))


def test_full_checkpoint_brings_its_head_and_centre(full_checkpoint: DinoFullCheckpoint) -> None:
    nets = networks(weights=str(full_checkpoint.path), out_dim=None, hidden_dim=2048)
    config = nets.config
    assert config.out_dim == K and config.head_warmup_epochs == 0
    assert (config.lr, config.layer_decay, config.koleo) == (1e-4, 0.75, 0.0)  # fine-tuning
    assert nets.start.base_weights == str(full_checkpoint.path)
    center = nets.start.center
    assert center is not None and torch.equal(center, full_checkpoint.center)
    # The teacher branch of the file (DINO's recommended one) starts both networks.
    assert_state_equal(nets.student.backbone.vit.state_dict(), file_backbone(full_checkpoint))
    reference = DINOHead(64, K, **HEAD, norm_last_layer=False).eval()
    reference.load_state_dict(legacy_head_state(full_checkpoint.teacher_head))
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(nets.student.head.eval()(x), expected, atol=0, rtol=0)
        torch.testing.assert_close(nets.teacher.head(x), expected, atol=0, rtol=0)
    assert nets.student.head.last_layer_g.requires_grad  # learned norms stay learnable


def test_out_dim_must_match_the_loaded_head(full_checkpoint: DinoFullCheckpoint) -> None:
    with pytest.raises(ValueError, match=f"out_dim=128 but the loaded head has {K} prototypes"):
        networks(weights=str(full_checkpoint.path), out_dim=128)


# 25% of the run, at most 1 epoch (1 of the 4 epochs docs/finetuning.md measured).
@pytest.mark.parametrize(("epochs", "head_warmup"), [(20, 1.0), (2, 0.5)])
def test_backbone_file_gets_a_fresh_head_warmed_up_first(
    tmp_path: Path, epochs: int, head_warmup: float
) -> None:
    source = random_backbone("vit_test", seed=5)
    path = write_dino_backbone_pth(tmp_path / "backbone.pth", source.vit)
    nets = networks(weights=str(path), epochs=epochs)
    assert nets.config.head_warmup_epochs == head_warmup
    assert nets.start.center is None and nets.config.out_dim == 64
    assert_state_equal(nets.student.backbone.vit.state_dict(), source.vit.state_dict())
    head = nets.student.head
    assert head.mlp[0].out_features == 64 and head.bottleneck_dim == 32  # the config's shape
    assert not head.last_layer_g.requires_grad and bool((head.last_layer_g == 1).all())


def test_teacher_is_an_exact_copy_without_drop_path() -> None:
    nets = networks(drop_path=0.3)
    student, teacher = nets.student.state_dict(), nets.teacher.state_dict()
    assert_state_equal(teacher, student)
    assert all(
        t.data_ptr() != s.data_ptr()
        for t, s in zip(nets.teacher.parameters(), nets.student.parameters(), strict=True)
    )
    drop_paths = [m for m in nets.student.modules() if type(m).__name__ == "DropPath"]
    assert drop_paths and max(m.drop_prob for m in drop_paths) == pytest.approx(0.3)
    assert not [m for m in nets.teacher.modules() if type(m).__name__ == "DropPath"]
    assert not any(p.requires_grad for p in nets.teacher.parameters())
    assert not nets.teacher.training and nets.student.training


def test_head_warmup_freezes_the_backbone_and_freeze_last_layer_the_prototypes(
    full_checkpoint: DinoFullCheckpoint, image_folder: Path, tmp_path: Path
) -> None:
    """Epoch 1: only the head MLP trains. Epoch 2: everything. The centre is the file's."""
    out = tmp_path / "run"
    options = {
        "weights": str(full_checkpoint.path),
        "out_dim": None,
        "head_warmup_epochs": 1.0,
        "freeze_last_layer": 1.0,
        "center_momentum": 1.0,  # keeps the loaded centre as it is
        "drop_path": 0.1,
    }
    initial_backbone = file_backbone(full_checkpoint)
    initial_head = {
        k: v for k, v in full_checkpoint.teacher_head.state_dict().items() if k in LAST_LAYER
    }
    mlp = "mlp.0.weight"
    initial_mlp = full_checkpoint.teacher_head.state_dict()[mlp]

    train(tiny_config(image_folder, out, max_steps=STEPS_PER_EPOCH, **options))
    after_warmup = last_checkpoint(out)
    assert after_warmup["epoch"] == 1
    assert torch.equal(after_warmup["loss"]["center"], full_checkpoint.center)
    assert_state_equal(after_warmup["student"]["backbone"], initial_backbone)
    for key in LAST_LAYER:
        assert torch.equal(after_warmup["student"]["head"][key], initial_head[key]), key
    assert not torch.equal(after_warmup["student"]["head"][mlp], initial_mlp)

    train(tiny_config(image_folder, out, resume=True, **options))
    done = last_checkpoint(out)
    assert done["epoch"] == 2
    changed = [
        k for k, v in done["student"]["backbone"].items() if not torch.equal(v, initial_backbone[k])
    ]
    assert len(changed) == len(initial_backbone)
    for key in LAST_LAYER:
        assert not torch.equal(done["student"]["head"][key], initial_head[key]), key


def test_batchnorm_head_normalises_the_teacher_with_batch_statistics() -> None:
    nets = networks(use_bn_in_head=True)
    norms = [m for m in nets.teacher.head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2  # after each of the two hidden layers, as the reference's use_bn
    # The reference never puts its teacher in eval mode: BatchNorm uses the batch's statistics.
    assert all(m.training for m in norms) and not nets.teacher.backbone.training
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = nets.teacher.head.mlp[:2](x)  # Linear then BatchNorm1d
    torch.testing.assert_close(out.mean(0), torch.zeros(out.shape[1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("n_images", "expected"),
    [
        # The paper: 65,536 prototypes for ImageNet-1k's 1,281,167 images (~19.5 each).
        (1_281_167, 65536),
        (5_000, 256),  # 250 -> nearest power of two 256
        (100_000, 4096),  # 5,000 -> 4,096
        (30_000, 2048),  # 1,500: log2 10.55 rounds to 11
        (1_000, 256),  # 50 -> the floor
        (10, 256),
        (100_000_000, 65536),  # the ceiling
        (None, 65536),  # unknown size: the paper's value
    ],
)
def test_automatic_out_dim_keeps_about_twenty_images_per_prototype(
    n_images: int | None, expected: int
) -> None:
    assert auto_out_dim(n_images) == expected


def test_out_dim_auto_follows_the_dataset_and_an_explicit_value_wins() -> None:
    assert resolve(tiny_config("unused", "unused", out_dim=None)).out_dim == 65536  # size unknown
    config = tiny_config("unused", "unused", out_dim=None)
    assert resolve(config, n_images=5_000).out_dim == 256
    config = tiny_config("unused", "unused", out_dim=64)
    assert resolve(config, n_images=5_000).out_dim == 64


def test_koleo_auto_is_dinov2s_weight_from_scratch_only(
    full_checkpoint: DinoFullCheckpoint,
) -> None:
    def koleo(**overrides: Any) -> float:
        return resolve(tiny_config("unused", "unused", **overrides)).koleo

    assert koleo() == 0.1  # from scratch (DINOv2 koleo_loss_weight)
    assert koleo(batch_size=1) == 0.0  # no other image to spread from
    assert koleo(weights=str(full_checkpoint.path), out_dim=None) == 0.0
    assert koleo(koleo=0.3) == 0.3
    with pytest.raises(ValueError, match="batch of at least 2"):
        tiny_config("unused", "unused", batch_size=1, koleo=0.1).validate()
