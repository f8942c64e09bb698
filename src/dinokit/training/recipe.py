"""The recipe a run continues, and the teacher momentum of other batch sizes.

An official DINO full checkpoint (facebookresearch/dino ``main_dino.py``, ``save_dict``)
records the run's ``args``. Continuing it means keeping its method: teacher temperatures
and their warm-up, momentum, head options, weight decay, clipping, stochastic depth and
multi-crop. :func:`recipe_from_args` turns those ``args`` into :class:`TrainConfig` values
with a note of where each came from; the run's length, learning rate and batch stay the new
run's own (see ``docs/training.md``). Schedules that count epochs from the start (the
teacher-temperature warm-up, the last layer's freeze) continue from the checkpoint's epoch.

Teacher momentum: the reference's 0.996 is for its batch of 1024 images (16 GPUs x 64,
Caron et al., 2021, Sec. 4.1) and its ``--momentum_teacher`` help asks for a higher value
with small batches ("0.9995 with batch size of 256"). :func:`momentum_for_batch` keeps the
teacher's decay per training image: ``m' = m ** (B' / B)``, so ``B / B'`` steps at batch
``B'`` average the student as one step at ``B`` does and the teacher's horizon stays the
same number of images. This is the EMA scaling rule of Busbridge et al., 2023 ("How to
Scale Your EMA", arXiv:2307.13813), which they pair with a learning rate scaled with the
batch, as DINO's is. At 256 it gives 0.999 (the reference's example, 0.9995, is higher
still).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..dino import defaults
from ..dino.loss import teacher_temperature

logger = logging.getLogger(__name__)

#: The values a continued run keeps: ``main_dino.py`` argument -> (TrainConfig field, the
#: reference's value, used when nothing was recorded).
RECIPE_ARGS: dict[str, tuple[str, Any]] = {
    "teacher_temp": ("teacher_temp", defaults.TEACHER_TEMP),
    "warmup_teacher_temp": ("warmup_teacher_temp", defaults.WARMUP_TEACHER_TEMP),
    "warmup_teacher_temp_epochs": (
        "warmup_teacher_temp_epochs",
        defaults.WARMUP_TEACHER_TEMP_EPOCHS,
    ),
    "momentum_teacher": ("momentum", defaults.TEACHER_MOMENTUM),
    "norm_last_layer": ("norm_last_layer", defaults.NORM_LAST_LAYER),
    "use_bn_in_head": ("use_bn_in_head", defaults.USE_BN_IN_HEAD),
    "weight_decay": ("weight_decay", defaults.WEIGHT_DECAY),
    "weight_decay_end": ("weight_decay_end", defaults.WEIGHT_DECAY_END),
    "clip_grad": ("clip_grad", defaults.CLIP_GRAD),
    "drop_path_rate": ("drop_path", defaults.DROP_PATH),
    "freeze_last_layer": ("freeze_last_layer", defaults.FREEZE_LAST_LAYER),
    "local_crops_number": ("local_crops", defaults.N_LOCAL_CROPS),
    "global_crops_scale": ("global_scale", defaults.GLOBAL_SCALE),
    "local_crops_scale": ("local_scale", defaults.LOCAL_SCALE),
}


def momentum_for_batch(momentum: float, batch: int, reference_batch: int) -> float:
    """The teacher momentum at ``batch`` with the per-image decay of ``momentum`` at
    ``reference_batch``: ``momentum ** (batch / reference_batch)``.

    Example: 0.996 at 1024 gives 0.999 at 256 and 0.999875 at 32.
    """
    if batch < 1 or reference_batch < 1 or not 0.0 <= momentum <= 1.0:
        raise ValueError(
            f"momentum_for_batch: need momentum in [0, 1] and batches >= 1, got "
            f"{momentum}, {batch}, {reference_batch}"
        )
    return float(momentum ** (batch / reference_batch))


@dataclass(frozen=True)
class Recipe:
    """Values recorded with the starting weights.

    Attributes:
        values: TrainConfig field -> value (only what the record holds).
        notes: Field -> where the value came from, for the log and ``config.yaml``.
        batch: The recorded run's total batch (for the momentum rule), if known.
        origin: Where the record came from (``checkpoint args``, ``the run's recipe``).
    """

    values: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    batch: int | None = None
    origin: str = ""  # where the record came from, as its notes begin


#: How the notes of an official checkpoint's recorded values, and of a dinokit run's, begin.
ARGS_ORIGIN, RUN_ORIGIN = "checkpoint args", "the run's recipe"


def recipe_from_args(args: Mapping[str, Any] | None, *, epoch: int | None) -> Recipe:
    """The recipe of an official DINO full checkpoint, continued after ``epoch`` epochs.

    Args:
        args: The checkpoint's ``args`` (``main_dino.py``'s Namespace, as a mapping).
        epoch: Epochs the checkpoint had completed (its ``epoch`` entry), if recorded.

    Returns:
        The values and their notes; empty without ``args``.
    """
    if not args:
        return Recipe()
    values: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for arg, (name, default) in RECIPE_ARGS.items():
        if args.get(arg) is None:
            continue
        value = args[arg]
        values[name] = tuple(float(v) for v in value) if isinstance(default, tuple) else value
        notes[name] = f"{ARGS_ORIGIN}: {arg}={show(value)}"
    done = int(epoch) if isinstance(epoch, int | float) else 0
    if done and "warmup_teacher_temp_epochs" in values:
        _continue_temperature_warmup(values, notes, done)
    if done and "freeze_last_layer" in values:
        frozen = float(values["freeze_last_layer"])
        values["freeze_last_layer"] = max(0.0, frozen - done)
        notes["freeze_last_layer"] += f", {min(frozen, done):g} of them done by epoch {done}"
    optimizer = args.get("optimizer")
    if optimizer not in (None, "adamw"):
        logger.warning("the checkpoint was trained with %s; dinokit trains with AdamW", optimizer)
    batch = None
    per_gpu, world = args.get("batch_size_per_gpu"), args.get("world_size")
    if isinstance(per_gpu, int) and isinstance(world, int) and per_gpu > 0 and world > 0:
        batch = per_gpu * world
    return Recipe(values, notes, batch, origin=ARGS_ORIGIN)


#: The values a dinokit run folder brings when it is trained further (on new images, say):
#: its method, the learning rate and layer decay included, so a run continues as it was
#: trained. A run from scratch continues as pretraining; a gentle fine-tuning run stays gentle.
#: Its length, batch, spans and data are the new run's own.
RUN_RECIPE_FIELDS = (
    "lr",
    "layer_decay",
    "koleo",
    "momentum",
    "teacher_temp",
    "norm_last_layer",
    "use_bn_in_head",
    "weight_decay",
    "weight_decay_end",
    "clip_grad",
    "drop_path",
    "local_crops",
    "global_scale",
    "local_scale",
)


def recipe_from_run(train_config: Mapping[str, Any] | None, *, world_size: int = 1) -> Recipe:
    """The recipe of a dinokit training checkpoint (its recorded ``train_config``).

    The teacher temperature continues at its final value (the recorded run's warm-up is
    over, or is not repeated), and the momentum rule reads the recorded total batch.

    Args:
        train_config: The checkpoint's resolved :class:`TrainConfig` fields.
        world_size: The recorded run's processes (its batch is per process).

    Returns:
        The values of :data:`RUN_RECIPE_FIELDS` it records, with notes; empty without it.
    """
    if not train_config:
        return Recipe()
    values: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name in RUN_RECIPE_FIELDS:
        value = train_config.get(name)
        if value is None:
            continue
        values[name] = tuple(float(v) for v in value) if isinstance(value, list | tuple) else value
        notes[name] = f"{RUN_ORIGIN}: {name}={show(value)}"
    if "teacher_temp" in values:
        values["warmup_teacher_temp"] = values["teacher_temp"]
        values["warmup_teacher_temp_epochs"] = 0
        notes["warmup_teacher_temp"] = f"{RUN_ORIGIN}: teacher_temp (its warm-up done)"
        notes["warmup_teacher_temp_epochs"] = f"{RUN_ORIGIN}: its warm-up done"
    batch = train_config.get("batch_size")
    total = batch * max(1, world_size) if isinstance(batch, int) and batch > 0 else None
    return Recipe(values, notes, total, origin=RUN_ORIGIN)


def _continue_temperature_warmup(values: dict[str, Any], notes: dict[str, str], done: int) -> None:
    """The rest of the reference's linear warm-up after ``done`` epochs (same line)."""
    epochs = int(values["warmup_teacher_temp_epochs"])
    start = float(
        values.get("warmup_teacher_temp", values.get("teacher_temp", defaults.WARMUP_TEACHER_TEMP))
    )
    final = float(values.get("teacher_temp", start))
    now = teacher_temperature(
        done, warmup_teacher_temp=start, teacher_temp=final, warmup_epochs=epochs
    )
    remaining = max(0, epochs - done) if now != final else 0
    values["warmup_teacher_temp_epochs"] = remaining
    notes["warmup_teacher_temp_epochs"] += f", {remaining} left after epoch {done}"
    if remaining:
        values["warmup_teacher_temp"] = now
        notes["warmup_teacher_temp"] = f"checkpoint args: the warm-up's value at epoch {done}"


def show(value: Any) -> str:
    """A value as the log and ``config.yaml`` notes write it (floats to 6 digits)."""
    if isinstance(value, list | tuple):
        return "(" + ", ".join(show(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)
