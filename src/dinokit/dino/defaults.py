"""The DINO recipe's reference values, written once.

Every value is a default of facebookresearch/dino ``main_dino.py`` (``get_args_parser``, and
``DINOLoss`` / ``DINOHead`` / ``DataAugmentationDINO`` for the few that are not flags), as
used in Caron et al., 2021 (arXiv:2104.14294). The head, loss, schedules and multi-crop of
:mod:`dinokit.dino`, ``TrainConfig`` and the ``dinokit train`` help read them from here.
"""

from __future__ import annotations

# Head: --out_dim, --norm_last_layer, --use_bn_in_head; DINOHead's hidden_dim, bottleneck_dim
# and nlayers.
OUT_DIM = 65536
HIDDEN_DIM = 2048
BOTTLENECK_DIM = 256
HEAD_LAYERS = 3
NORM_LAST_LAYER = True
USE_BN_IN_HEAD = False

# Loss: --warmup_teacher_temp, --teacher_temp, --warmup_teacher_temp_epochs; DINOLoss's
# student_temp and center_momentum; the two global crops the teacher sees.
WARMUP_TEACHER_TEMP = 0.04
TEACHER_TEMP = 0.04
WARMUP_TEACHER_TEMP_EPOCHS = 0
STUDENT_TEMP = 0.1
CENTER_MOMENTUM = 0.9
N_GLOBAL_CROPS = 2

# Teacher EMA: --momentum_teacher, chosen for the paper's batch of 1024 images (16 GPUs x 64,
# Sec. 4.1), raised to 1 by a cosine over the run.
TEACHER_MOMENTUM = 0.996
TEACHER_MOMENTUM_BATCH = 1024
FINAL_TEACHER_MOMENTUM = 1.0

# Optimisation: --lr (per LR_BATCH images, the linear scaling rule), --min_lr,
# --warmup_epochs, --weight_decay, --weight_decay_end, --clip_grad, --freeze_last_layer,
# --drop_path_rate.
BASE_LR = 5e-4
LR_BATCH = 256
MIN_LR = 1e-6
LR_WARMUP_EPOCHS = 10
WEIGHT_DECAY = 0.04
WEIGHT_DECAY_END = 0.4
CLIP_GRAD = 3.0
FREEZE_LAST_LAYER = 1.0
DROP_PATH = 0.1

# Multi-crop: --local_crops_number, --global_crops_scale, --local_crops_scale; the crop sizes
# of DataAugmentationDINO.
N_LOCAL_CROPS = 8
GLOBAL_SCALE = (0.4, 1.0)
LOCAL_SCALE = (0.05, 0.4)
GLOBAL_SIZE = 224
LOCAL_SIZE = 96
