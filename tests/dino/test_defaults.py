"""The reference's values, written once in dinokit.dino.defaults, and read from there.

Expected values are facebookresearch/dino ``main_dino.py``'s ``get_args_parser`` defaults
(and ``DINOLoss``'s / ``DINOHead``'s keyword defaults, ``DataAugmentationDINO``'s crop
sizes), copied here by hand so that a change to the module shows.
"""

from __future__ import annotations

import inspect

import pytest

from dinokit.cli import build_parser
from dinokit.dino import DINOHead, DINOLoss, MultiCropTransform, defaults
from dinokit.training import TrainConfig


def test_the_values_are_main_dino_pys() -> None:
    # --out_dim 65536, --norm_last_layer True, --use_bn_in_head False; DINOHead(hidden_dim=2048,
    # bottleneck_dim=256, nlayers=3).
    head = (defaults.OUT_DIM, defaults.HIDDEN_DIM, defaults.BOTTLENECK_DIM, defaults.HEAD_LAYERS)
    assert head == (65536, 2048, 256, 3)
    assert (defaults.NORM_LAST_LAYER, defaults.USE_BN_IN_HEAD) == (True, False)
    # --warmup_teacher_temp 0.04 --teacher_temp 0.04 --warmup_teacher_temp_epochs 0;
    # DINOLoss(student_temp=0.1, center_momentum=0.9); teacher_output.chunk(2).
    assert (defaults.WARMUP_TEACHER_TEMP, defaults.TEACHER_TEMP) == (0.04, 0.04)
    assert defaults.WARMUP_TEACHER_TEMP_EPOCHS == 0
    assert (defaults.STUDENT_TEMP, defaults.CENTER_MOMENTUM, defaults.N_GLOBAL_CROPS) == (
        0.1,
        0.9,
        2,
    )
    # --momentum_teacher 0.996 (paper, Sec. 4.1: batch 1024), cosine to 1.
    assert (defaults.TEACHER_MOMENTUM, defaults.TEACHER_MOMENTUM_BATCH) == (0.996, 1024)
    assert defaults.FINAL_TEACHER_MOMENTUM == 1.0
    # --lr 0.0005 per 256 images, --min_lr 1e-6, --warmup_epochs 10, --weight_decay 0.04,
    # --weight_decay_end 0.4, --clip_grad 3.0, --freeze_last_layer 1, --drop_path_rate 0.1.
    assert (defaults.BASE_LR, defaults.LR_BATCH, defaults.MIN_LR) == (0.0005, 256, 1e-6)
    assert defaults.LR_WARMUP_EPOCHS == 10
    assert (defaults.WEIGHT_DECAY, defaults.WEIGHT_DECAY_END, defaults.CLIP_GRAD) == (
        0.04,
        0.4,
        3.0,
    )
    assert (defaults.FREEZE_LAST_LAYER, defaults.DROP_PATH) == (1, 0.1)
    # --local_crops_number 8, --global_crops_scale (0.4, 1.), --local_crops_scale (0.05, 0.4);
    # RandomResizedCrop(224) and (96) in DataAugmentationDINO.
    assert defaults.N_LOCAL_CROPS == 8
    assert (defaults.GLOBAL_SCALE, defaults.LOCAL_SCALE) == ((0.4, 1.0), (0.05, 0.4))
    assert (defaults.GLOBAL_SIZE, defaults.LOCAL_SIZE) == (224, 96)


def _default(function: object, name: str) -> object:
    return inspect.signature(function).parameters[name].default  # type: ignore[arg-type]


def test_the_building_blocks_config_and_help_read_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert _default(DINOLoss, "teacher_temp") == defaults.TEACHER_TEMP
    assert _default(DINOLoss, "student_temp") == defaults.STUDENT_TEMP
    assert _default(DINOLoss, "center_momentum") == defaults.CENTER_MOMENTUM
    assert _default(DINOHead, "bottleneck_dim") == defaults.BOTTLENECK_DIM
    assert _default(MultiCropTransform, "n_local_crops") == defaults.N_LOCAL_CROPS
    config = TrainConfig()
    assert (config.student_temp, config.center_momentum) == (0.1, 0.9)
    assert (config.hidden_dim, config.bottleneck_dim, config.min_lr) == (2048, 256, 1e-6)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "teacher temperature after warm-up (0.04*)" in text
    assert "teacher EMA momentum, cosine to 1 (auto: 0.996* at batch 1024" in text
