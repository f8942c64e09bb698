"""The resolved config: every value concrete, each automatic one with its source, frozen, and
``config.yaml`` readable in its earlier layout.

Nothing here trains except the resume test (the tiny ``vit_test`` on 32 px images, fp32).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from dinokit.cli import main
from dinokit.training import TrainConfig
from dinokit.training.config import ResolvedConfig
from tests.models.checkpoints import random_backbone, write_dino_backbone_pth
from tests.training.test_cli_train import SMALL, write_config
from tests.training.test_run import (
    fast_training,
    image_folder,
    last_checkpoint,
    resolve,
    step_records,
    tiny_config,
)

__all__ = ["fast_training", "image_folder"]  # shared fixtures

#: Fields whose ``None`` is a choice, not *auto*: the official weights, no budget (epochs),
#: no early stop, no kNN monitor.
NONE_IS_A_CHOICE = {"weights", "budget", "max_steps", "eval_train", "eval_val"}
#: Every field a request may leave on auto.
AUTO = {f.name for f in dataclasses.fields(TrainConfig) if f.default is None} - NONE_IS_A_CHOICE

#: ``config.yaml`` as the previous layout wrote it: TrainConfig's field order then, and the
#: ``tensorboard`` key of still earlier files.
EARLIER_ORDER = (  # noqa: SIM905 (the field names, as a paragraph)
    "data model weights out epochs batch_size max_steps lr min_lr warmup_epochs weight_decay "
    "weight_decay_end clip_grad layer_decay freeze_blocks head_warmup_epochs drop_path out_dim "
    "hidden_dim bottleneck_dim norm_last_layer use_bn_in_head freeze_last_layer student_temp "
    "warmup_teacher_temp teacher_temp warmup_teacher_temp_epochs center_momentum centering "
    "koleo momentum local_crops global_size local_size global_scale local_scale precision "
    "device workers seed save_every keep_every log_every eval_train eval_val eval_every knn_k "
    "logger progress resume"
).split()


def auto_request(weights: str) -> TrainConfig:
    """A request that leaves every automatic value to the rules."""
    config = tiny_config("unused", "unused", weights=weights)
    return dataclasses.replace(config, precision="auto", **dict.fromkeys(AUTO))


@pytest.mark.parametrize("start", ["scratch", "backbone-file"])
def test_every_value_is_concrete_and_every_auto_one_has_a_source(
    tmp_path: Path, start: str
) -> None:
    weights = "none"
    if start == "backbone-file":
        vit = random_backbone("vit_test", seed=0).vit
        weights = str(write_dino_backbone_pth(tmp_path / "backbone.pth", vit))
    config = resolve(auto_request(weights), n_images=5_000)
    assert isinstance(config, ResolvedConfig)
    for field in dataclasses.fields(config):
        if field.name not in NONE_IS_A_CHOICE:
            assert getattr(config, field.name) is not None, field.name
    assert config.precision in ("bf16", "fp16", "fp32")
    assert AUTO | {"precision"} <= set(config.sources)
    assert config.fine_tuning == (start == "backbone-file")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]


def test_values_the_user_sets_carry_no_source() -> None:
    config = resolve(tiny_config("unused", "unused", lr=3e-4, precision="fp32"))
    assert config.lr == 3e-4 and config.precision == "fp32"
    assert not {"lr", "out_dim", "precision"} & set(config.sources)
    record = config.record()
    assert record["lr"] == 3e-4 and record["precision"] == "fp32" and "sources" not in record


def test_an_automatic_precision_is_recorded_as_auto() -> None:
    """The resolved precision depends on the machine: a resumed run picks its own."""
    config = resolve(dataclasses.replace(tiny_config("unused", "unused"), precision="auto"))
    assert config.precision != "auto" and config.record()["precision"] == "auto"
    assert config.sources["precision"] == f"{config.precision} on this machine"


def test_a_config_yaml_of_the_earlier_layout_resumes(image_folder: Path, tmp_path: Path) -> None:
    """Keys in the earlier order, ``tensorboard: false`` among them: ``--resume`` reads it and
    continues with the same values."""
    config = write_config(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--no-progress"]
    assert main([*argv, str(image_folder), "--config", str(config), "--max-steps", "1"]) == 0
    first: dict[str, Any] = yaml.safe_load((out / "config.yaml").read_text())
    assert "tensorboard" not in first and first["logger"] == "jsonl"
    earlier = {key: first[key] for key in EARLIER_ORDER} | {"tensorboard": False}
    # Only the length's newer fields are missing: they are worked out again on resume.
    assert set(earlier) == set(first) - {"budget", "steps"} | {"tensorboard"}
    (out / "config.yaml").write_text(yaml.safe_dump(earlier, sort_keys=False))

    assert main([*argv, "--resume"]) == 0
    assert [r["step"] for r in step_records(out)] == [1, 2]
    resumed = last_checkpoint(out)["dinokit"]["train_config"]
    assert yaml.safe_load(yaml.safe_dump(resumed)) == first | {"max_steps": None}
