"""The DINO method as building blocks (Caron et al., 2021, facebookresearch/dino).

Projection head, loss with centring and temperature schedule, EMA teacher, per-step
schedules and multi-crop augmentation, with the reference's values in
:mod:`dinokit.dino.defaults`; the training loop that uses them lives in ``dinokit.training``.
"""

from dinokit.dino.collapse import collapse_signature
from dinokit.dino.ema import disable_drop_path, make_teacher, update_teacher
from dinokit.dino.head import (
    DINOHead,
    cancel_last_layer_gradients,
    convert_legacy_head_state_dict,
    to_legacy_head_state_dict,
)
from dinokit.dino.koleo import koleo_loss, koleo_per_crop
from dinokit.dino.loss import DINOLoss, teacher_temperature
from dinokit.dino.multicrop import MultiCropTransform
from dinokit.dino.schedules import (
    Schedules,
    cosine_schedule,
    dino_schedules,
    respan,
    respanned_step,
    scaled_lr,
)

__all__ = [
    "DINOHead",
    "DINOLoss",
    "MultiCropTransform",
    "Schedules",
    "cancel_last_layer_gradients",
    "collapse_signature",
    "convert_legacy_head_state_dict",
    "cosine_schedule",
    "dino_schedules",
    "disable_drop_path",
    "koleo_loss",
    "koleo_per_crop",
    "make_teacher",
    "respan",
    "respanned_step",
    "scaled_lr",
    "teacher_temperature",
    "to_legacy_head_state_dict",
    "update_teacher",
]
