"""Continuing an official DINO full checkpoint with its recorded recipe; the momentum rule.

The checkpoints are written by :mod:`tests.models.checkpoints` in ``main_dino.py``'s layout,
with the ``args`` of the README's boosted ViT-S/16 run (teacher temperature 0.07 after a
30-epoch warm-up, no last-layer normalisation, 16 GPUs x 64 images). Values are compared
exactly or to float64 rounding; nothing here runs at reduced precision.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dinokit.dino.head import DINOHead
from dinokit.training import train
from dinokit.training.config import TrainConfig
from dinokit.training.recipe import Recipe, momentum_for_batch, recipe_from_args, recipe_from_run
from tests.models.checkpoints import (
    BOOSTED_VITS16_ARGS,
    DinoFullCheckpoint,
    random_backbone,
    write_dino_full_checkpoint,
)
from tests.training.test_run import (
    BATCH,
    Built,
    build,
    fast_training,
    image_folder,
    resolve,
    step_records,
    tiny_config,
)

__all__ = ["fast_training", "image_folder"]  # shared fixtures

K = 64


def learned_head(seed: int) -> DINOHead:
    """A head trained with norm_last_layer false: per-prototype norms g != 1."""
    torch.manual_seed(seed)
    head = DINOHead(64, K, hidden_dim=48, bottleneck_dim=16)
    with torch.no_grad():
        head.last_layer_g.uniform_(0.5, 2.0)
    return head.eval()


def boosted_checkpoint(path: Path, *, epoch: int = 300) -> DinoFullCheckpoint:
    student, teacher = random_backbone("vit_test", seed=1), random_backbone("vit_test", seed=2)
    return write_dino_full_checkpoint(
        path,
        student.vit,
        teacher.vit,
        K,
        student_head=learned_head(3),
        teacher_head=learned_head(4),
        epoch=epoch,
        args=BOOSTED_VITS16_ARGS | {"out_dim": K},
    )


@pytest.fixture(scope="module")
def boosted(tmp_path_factory: pytest.TempPathFactory) -> DinoFullCheckpoint:
    """The boosted run's checkpoint after its 300 epochs."""
    return boosted_checkpoint(tmp_path_factory.mktemp("boosted") / "full_checkpoint.pth")


def continued(checkpoint: DinoFullCheckpoint, **overrides: Any) -> Built:
    """Networks of a run from ``checkpoint`` that leaves the recipe's fields unset."""
    config = tiny_config("unused", "unused", weights=str(checkpoint.path))
    unset: dict[str, Any] = {"out_dim": None, "local_crops": None}
    return build(dataclasses.replace(config, **(unset | overrides)))


def test_momentum_rule_keeps_the_decay_per_image() -> None:
    # m ** (B / 1024): 1024 / B steps at batch B see as many images as one step at 1024.
    assert momentum_for_batch(0.996, 1024, 1024) == 0.996
    assert momentum_for_batch(0.996, 256, 1024) == pytest.approx(0.999, abs=2e-6)
    assert momentum_for_batch(0.996, 32, 1024) ** 32 == pytest.approx(0.996, rel=1e-12)
    assert momentum_for_batch(0.996, 4096, 1024) == pytest.approx(0.996**4, rel=1e-12)
    # The reference's help text: "use 0.9995 with batch size of 256", higher than 0.996.
    assert 0.996 < momentum_for_batch(0.996, 256, 1024) < 1.0
    with pytest.raises(ValueError, match="batches >= 1"):
        momentum_for_batch(0.996, 0, 1024)


def test_momentum_auto_follows_the_total_batch_and_a_set_value_wins() -> None:
    # 72 px crops: not small images, so the reference's momentum is the base.
    config = tiny_config("unused", "unused", batch_size=8, global_size=72, local_size=32)
    resolved = resolve(config)
    assert resolved.momentum == pytest.approx(0.996 ** (8 / 1024), rel=1e-12)
    assert (
        resolved.sources["momentum"]
        == "reference 0.996 at batch 1024, per image: 0.996 ** (8 / 1024)"
    )
    under_ddp = resolve(config, world_size=4)  # 4 processes of 8 images
    assert under_ddp.momentum == pytest.approx(0.996 ** (32 / 1024), rel=1e-12)
    chosen = resolve(tiny_config("unused", "unused", batch_size=8, momentum=0.99))
    assert chosen.momentum == 0.99 and "momentum" not in chosen.sources


def test_momentum_from_scratch_on_small_images_is_the_measured_one_per_image() -> None:
    # docs/finetuning.md: 0.99 at batch 128 for short runs on 32 px images, per image elsewhere.
    small = resolve(tiny_config("unused", "unused", batch_size=8))
    assert small.momentum == pytest.approx(0.99 ** (8 / 128), rel=1e-12)
    assert small.sources["momentum"].startswith("small images from scratch: 0.99 at batch 128")
    assert resolve(tiny_config("unused", "unused", batch_size=128)).momentum == 0.99


def test_full_checkpoint_continues_its_recipe(boosted: DinoFullCheckpoint) -> None:
    nets = continued(boosted)
    config, sources = nets.config, nets.config.sources
    # Continuing the boosted run keeps its 0.07 teacher: the 30-epoch warm-up is long over.
    assert (config.teacher_temp, config.warmup_teacher_temp_epochs) == (0.07, 0)
    assert sources["teacher_temp"] == "checkpoint args: teacher_temp=0.07"
    assert sources["warmup_teacher_temp_epochs"].endswith("0 left after epoch 300")
    assert config.norm_last_layer is False and sources["norm_last_layer"] == "the loaded head"
    assert config.freeze_last_layer == 0.0  # its 1 epoch was done at the start of the run
    # Its momentum was chosen for 16 x 64 images; this run's batch is 2.
    assert config.momentum == pytest.approx(0.996 ** (2 / 1024), rel=1e-12)
    assert sources["momentum"].startswith("checkpoint args 0.996 at batch 1024")
    for name, value in (("local_crops", 8), ("local_scale", (0.05, 0.4)), ("drop_path", 0.1)):
        assert getattr(config, name) == value and sources[name].startswith("checkpoint args")
    assert config.out_dim == K and sources["out_dim"] == "the loaded head"
    assert nets.student.head.last_layer_g.requires_grad  # learned norms stay learnable


def test_values_the_user_sets_win_over_the_recipe(boosted: DinoFullCheckpoint) -> None:
    nets = continued(boosted, teacher_temp=0.04, local_crops=2, momentum=0.99)
    assert (nets.config.teacher_temp, nets.config.local_crops) == (0.04, 2)
    assert nets.config.momentum == 0.99
    assert not {"teacher_temp", "local_crops", "momentum"} & set(nets.config.sources)
    with pytest.raises(ValueError, match="norm_last_layer=True but the loaded head"):
        continued(boosted, norm_last_layer=True)
    with pytest.raises(ValueError, match="use_bn_in_head=True but the loaded head has no"):
        continued(boosted, use_bn_in_head=True)


def test_a_checkpoint_inside_its_warmup_continues_the_same_line() -> None:
    """After 10 of 30 warm-up epochs, the rest of the reference's linspace(0.04, 0.07, 30)."""
    args = {"warmup_teacher_temp": 0.04, "teacher_temp": 0.07, "warmup_teacher_temp_epochs": 30}
    recipe = recipe_from_args(args, epoch=10)
    assert recipe.values["warmup_teacher_temp_epochs"] == 20
    reference = torch.linspace(0.04, 0.07, 30, dtype=torch.float64)
    assert recipe.values["warmup_teacher_temp"] == pytest.approx(float(reference[10]), abs=1e-15)


def test_recipe_maps_every_recorded_argument() -> None:
    """The README's ResNet-50 command changes weight decay and crop scales."""
    args = {
        "weight_decay": 1e-4,
        "weight_decay_end": 1e-4,
        "global_crops_scale": [0.14, 1.0],
        "local_crops_scale": [0.05, 0.14],
        "local_crops_number": 6,
        "clip_grad": 0.0,
        "drop_path_rate": 0.0,
        "batch_size_per_gpu": 32,
        "world_size": 8,
        "lr": 0.03,  # the new run's lr is its own
        "epochs": 100,
    }
    recipe = recipe_from_args(args, epoch=None)
    assert recipe.values == {
        "weight_decay": 1e-4,
        "weight_decay_end": 1e-4,
        "global_scale": (0.14, 1.0),
        "local_scale": (0.05, 0.14),
        "local_crops": 6,
        "clip_grad": 0.0,
        "drop_path": 0.0,
    }
    assert recipe.batch == 256
    assert recipe_from_args(None, epoch=3).values == {}


def test_continued_run_uses_and_records_the_recipe(
    boosted: DinoFullCheckpoint,
    image_folder: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dinokit.cli import build_parser
    from dinokit.cli.train_cmd import build_config

    out = tmp_path / "run"
    config = tiny_config(image_folder, out, weights=str(boosted.path), out_dim=None, max_steps=2)
    with caplog.at_level(logging.INFO, logger="dinokit.training"):
        train(config)
    assert "teacher_temp=0.07 (from checkpoint args: teacher_temp=0.07)" in caplog.text
    assert [r["teacher_temp"] for r in step_records(out)] == [0.07, 0.07]  # not 0.04
    text = (out / "config.yaml").read_text()
    assert "teacher_temp: 0.07  # checkpoint args: teacher_temp=0.07\n" in text
    assert "momentum: " in text and "# checkpoint args 0.996 at batch 1024" in text
    saved = yaml.safe_load(text)  # the notes are comments: the file reloads as before
    assert saved["teacher_temp"] == 0.07 and saved["norm_last_layer"] is False

    # A command-line resume reads every value back from config.yaml; the notes stay.
    args = build_parser().parse_args(["train", "--out", str(out), "--resume", "--no-progress"])
    train(build_config(args))
    assert (
        "teacher_temp: 0.07  # checkpoint args: teacher_temp=0.07\n"
        in (out / "config.yaml").read_text()
    )


def test_a_dinokit_run_trained_further_continues_its_own_recipe(
    image_folder: Path, tmp_path: Path
) -> None:
    # CPU fp32; recorded values come back exactly. A run trained with its own method values...
    first = train(
        tiny_config(
            image_folder,
            tmp_path / "first",
            epochs=1,
            lr=2e-3,
            layer_decay=0.9,
            koleo=0.05,
            momentum=0.98,
            drop_path=0.0,
            local_crops=3,
            use_bn_in_head=True,
            teacher_temp=0.05,
            warmup_teacher_temp=0.03,
            warmup_teacher_temp_epochs=5,
        )
    )
    # ... then trained further on other images with nothing set: the run's recipe, at the
    # new batch (the momentum per image: 0.98 at the recorded batch).
    later = TrainConfig(
        data=[str(image_folder)],
        out=str(tmp_path / "later"),
        model=str(first),
        epochs=1,
        batch_size=2 * BATCH,
        workers=0,
        device="cpu",
        precision="fp32",
        progress=False,
    )
    config = resolve(later, n_images=10)
    assert (config.lr, config.layer_decay, config.koleo) == (2e-3, 0.9, 0.05)
    assert config.momentum == pytest.approx(momentum_for_batch(0.98, 2 * BATCH, BATCH), rel=1e-12)
    assert (config.drop_path, config.local_crops, config.use_bn_in_head) == (0.0, 3, True)
    # The temperature warm-up is not repeated: the teacher continues at its final value.
    assert (config.warmup_teacher_temp, config.teacher_temp) == (0.05, 0.05)
    assert config.warmup_teacher_temp_epochs == 0 and config.head_warmup_epochs == 0
    assert config.sources["lr"] == "the run's recipe: lr=0.002"
    assert config.sources["momentum"].startswith("the run's recipe 0.98 at batch 2, per image")
    # What the user sets still wins; its bare weights file (no recipe) is fine-tuned gently.
    assert resolve(dataclasses.replace(later, lr=1e-5), n_images=10).lr == 1e-5
    bare_file = str(first / "teacher.safetensors")
    bare = resolve(dataclasses.replace(later, model=bare_file), n_images=10)
    assert (bare.lr, bare.layer_decay, bare.koleo) == (1e-4, 0.75, 0.0)
    assert bare.head_warmup_epochs > 0  # a new head


def test_a_multi_process_run_records_its_total_batch(tmp_path: Path) -> None:
    # The momentum rule reads the total batch: 4 processes of 64 images are batch 256.
    recipe = recipe_from_run({"batch_size": 64, "momentum": 0.996}, world_size=4)
    assert recipe.batch == 256 and recipe.values["momentum"] == 0.996
    assert recipe_from_run({"batch_size": 64}).batch == 64
    assert recipe_from_run(None) == Recipe()
