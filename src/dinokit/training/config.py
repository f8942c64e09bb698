"""Every knob of a DINO training run, with the reference's values as defaults.

Defaults follow facebookresearch/dino ``main_dino.py``; values marked *auto* (``None``)
are resolved at the start of a run from whether it fine-tunes pretrained weights or trains
from scratch (:func:`resolve_auto`), and the resolved config is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config_io import from_dict
from ..dino.koleo import DINOV2_KOLEO_WEIGHT
from ..dino.loss import (
    DEFAULT_TEACHER_TEMP,
    DEFAULT_WARMUP_TEACHER_TEMP,
    DEFAULT_WARMUP_TEACHER_TEMP_EPOCHS,
)
from ..dino.multicrop import DEFAULT_GLOBAL_SCALE, DEFAULT_LOCAL_SCALE, DEFAULT_N_LOCAL_CROPS
from ..runtime.machine import default_workers
from .recipe import REFERENCE_BATCH, REFERENCE_MOMENTUM, Recipe, momentum_for_batch

LOGGERS = ("jsonl", "tensorboard")
"""Where training metrics go: ``metrics.jsonl`` always, TensorBoard events too."""


@dataclass
class TrainConfig:
    """Configuration of ``dinokit train``; see ``docs/training.md`` for the why of each value.

    Data and model:
        data: Image folders (recursive) or list files; labels are ignored.
        model: Backbone name (``dino_vits16``, ``timm:<name>``...).
        weights: ``None`` = official pretrained weights, ``"none"`` = random init (from
            scratch), or a weights file (a DINO full checkpoint also brings its head and
            centre).
        out: Run folder.
    """

    data: list[str] = field(default_factory=list)
    model: str = "dino_vits16"
    weights: str | None = None
    out: str = "runs/dino"
    # Length and batch.
    epochs: int = 20
    batch_size: int = 32  # per process
    max_steps: int | None = None  # stop early (the schedules still span `epochs`)
    # Optimisation (reference: AdamW, lr 5e-4 per 256 images, warm-up 10 epochs, cosine).
    lr: float | None = None  # auto: 5e-4 from scratch, 1e-4 fine-tuning (per 256 images)
    min_lr: float = 1e-6
    warmup_epochs: float | None = None  # auto: 10% of the run, at most 10 epochs
    weight_decay: float | None = None  # auto: the recorded recipe's, else 0.04
    weight_decay_end: float | None = None  # auto: the recorded recipe's, else 0.4
    clip_grad: float | None = None  # per-parameter gradient norm clip (0 disables); auto: 3.0
    layer_decay: float | None = None  # auto: 1.0 from scratch, 0.75 fine-tuning
    freeze_blocks: int = 0
    head_warmup_epochs: float | None = None  # auto: 1 epoch when fine-tuning with a new head
    drop_path: float | None = None  # stochastic depth of the student only; auto: 0.1
    # DINO head and loss.
    out_dim: int | None = None  # prototypes; auto: ~20 images each (paper), or the loaded head's
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool | None = None  # auto: the loaded head's / recipe's, else True
    use_bn_in_head: bool | None = None  # BatchNorm after the head's hidden layers; auto: off
    freeze_last_layer: float | None = None  # epochs with the last head layer frozen; auto: 1
    student_temp: float = 0.1
    warmup_teacher_temp: float | None = None  # auto: the recorded recipe's, else 0.04
    teacher_temp: float | None = None  # auto: the recorded recipe's, else 0.04
    warmup_teacher_temp_epochs: int | None = None  # auto: what the recipe has left, else 0
    center_momentum: float = 0.9
    centering: str = "center"  # center (DINO's EMA centre) | sinkhorn (DINOv2's Sinkhorn-Knopp)
    koleo: float | None = None  # KoLeo weight on student CLS tokens; auto: 0.1 scratch, 0 tuning
    # Teacher EMA, cosine to 1 per step. Auto: 0.996 (or the recipe's) at its batch of 1024,
    # scaled to this run's total batch B as 0.996 ** (B / 1024) (recipe.momentum_for_batch).
    momentum: float | None = None
    # Multi-crop.
    local_crops: int | None = None  # auto: the recorded recipe's, else 8
    global_size: int | None = None  # auto: the backbone's native size (224)
    local_size: int | None = None  # auto: 96/224 of the global size, a patch multiple
    global_scale: tuple[float, float] | None = None  # auto: the recipe's, else (0.4, 1.0)
    local_scale: tuple[float, float] | None = None  # auto: the recipe's, else (0.05, 0.4)
    # Machine.
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = field(default_factory=lambda: default_workers(cap=4))
    seed: int = 0
    # Outputs.
    save_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    keep_every: int = 0  # keep checkpoints/epoch_XXXX.pt every N epochs (0: last.pt only)
    log_every: int = 10
    eval_train: str | None = None
    eval_val: str | None = None
    eval_every: int = 1
    knn_k: int = 20
    logger: str = "jsonl"  # jsonl (metrics.jsonl) | tensorboard (also TensorBoard events)
    progress: bool = True
    resume: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, object], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys are an error.

        The ``tensorboard: true/false`` key of earlier configs reads as ``logger``.
        """
        values = dict(data)
        if "tensorboard" in values:
            old = values.pop("tensorboard")
            if old and "logger" not in values:
                values["logger"] = "tensorboard"
        return from_dict(cls, values, source=source)

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message on an impossible value."""
        if not self.data:
            raise ValueError("no training data: pass one or more image folders or list files")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32, not {self.precision}")
        if self.logger not in LOGGERS:
            raise ValueError(f"logger must be one of {', '.join(LOGGERS)}, not {self.logger}")
        if self.centering not in ("center", "sinkhorn"):
            raise ValueError(f"centering must be center or sinkhorn, not {self.centering}")
        if self.koleo is not None and not self.koleo >= 0:
            raise ValueError(f"koleo must be >= 0 (0 disables it), not {self.koleo}")
        if self.koleo and self.batch_size < 2:
            raise ValueError("koleo needs a batch of at least 2 images per process; use --koleo 0")
        if self.local_crops is not None and self.local_crops < 0:
            raise ValueError("local_crops must be >= 0")
        if self.momentum is not None and not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], not {self.momentum}")
        if (self.eval_train is None) != (self.eval_val is None):
            raise ValueError("the kNN monitor needs both eval_train and eval_val")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError("layer_decay must be in (0, 1]")


def is_fine_tuning(config: TrainConfig) -> bool:
    """Whether the run starts from pretrained weights (anything but ``weights: none``)."""
    return not (isinstance(config.weights, str) and config.weights.lower() == "none")


# The paper's 65,536 prototypes for ImageNet's 1,281,167 images: about 20 images each.
IMAGES_PER_PROTOTYPE = 20
MIN_AUTO_OUT_DIM = 256
MAX_AUTO_OUT_DIM = 65536


def auto_out_dim(n_images: int | None) -> int:
    """Prototypes for a dataset of ``n_images``: about 20 images each, as in the paper.

    The DINO paper trains 65,536 prototypes on ImageNet-1k (1.28 M images, ~20 per
    prototype). With a few thousand images that many prototypes leave the centred teacher
    targets nearly uniform and short runs drift to the uniform collapse (docs/finetuning.md).
    The count is the power of two nearest to ``n_images / 20``, within [256, 65536];
    unknown dataset size: 65536.
    """
    if n_images is None:
        return MAX_AUTO_OUT_DIM
    power = 2 ** round(math.log2(max(n_images, 1) / IMAGES_PER_PROTOTYPE))
    return int(min(MAX_AUTO_OUT_DIM, max(MIN_AUTO_OUT_DIM, power)))


#: The reference's values (``main_dino.py`` defaults) of the fields a recorded recipe may set.
REFERENCE_RECIPE: dict[str, Any] = {
    "teacher_temp": DEFAULT_TEACHER_TEMP,
    "warmup_teacher_temp": DEFAULT_WARMUP_TEACHER_TEMP,
    "warmup_teacher_temp_epochs": DEFAULT_WARMUP_TEACHER_TEMP_EPOCHS,
    "norm_last_layer": True,
    "use_bn_in_head": False,
    "weight_decay": 0.04,
    "weight_decay_end": 0.4,
    "clip_grad": 3.0,
    "drop_path": 0.1,
    "freeze_last_layer": 1.0,
    "local_crops": DEFAULT_N_LOCAL_CROPS,
    "global_scale": DEFAULT_GLOBAL_SCALE,
    "local_scale": DEFAULT_LOCAL_SCALE,
}


def resolve_auto(
    config: TrainConfig,
    *,
    native_size: int,
    patch_size: int,
    head: Mapping[str, int] | None,
    n_images: int | None = None,
    world_size: int = 1,
    recipe: Recipe | None = None,
) -> tuple[TrainConfig, dict[str, str]]:
    """Fill every *auto* (``None``) value; returns a new config and where each value came from.

    Precedence: a value the user set (flag, YAML, keyword) > the loaded head's shape > the
    recipe recorded with the weights (an official full checkpoint's ``args``) > dinokit's
    defaults (the reference's, or those that depend on fine-tuning vs from scratch).

    Args:
        config: The requested config.
        native_size: The backbone's native image size.
        patch_size: The backbone's patch size (crop sizes are rounded to it).
        head: Shape of a head loaded with the weights (``out_dim``, ``use_bn``,
            ``norm_last_layer``...), if any.
        n_images: Training images (sets the automatic ``out_dim``), if known.
        world_size: Processes (the momentum rule follows the total batch).
        recipe: Values recorded with the weights, if any.

    Returns:
        The resolved config and ``{field: source}`` for every value that was *auto*.
    """
    fine_tune = is_fine_tuning(config)
    recipe = recipe or Recipe()
    sources: dict[str, str] = {}
    head_out_dim = head["out_dim"] if head else None
    if head_out_dim is not None and config.out_dim not in (None, head_out_dim):
        raise ValueError(
            f"out_dim={config.out_dim} but the loaded head has {head_out_dim} prototypes; "
            "drop --out-dim to keep the head, or pass a backbone-only weights file"
        )
    if head and config.use_bn_in_head is not None and config.use_bn_in_head != head["use_bn"]:
        raise ValueError(
            f"use_bn_in_head={config.use_bn_in_head} but the loaded head "
            f"{'has' if head['use_bn'] else 'has no'} BatchNorm; drop --use-bn-in-head to keep "
            "the head, or pass a backbone-only weights file"
        )
    if head and config.norm_last_layer and not head["norm_last_layer"]:
        raise ValueError(
            "norm_last_layer=True but the loaded head's last layer has learned norms (it was "
            "trained with norm_last_layer false); drop --norm-last-layer to keep them"
        )
    values: dict[str, Any] = {}
    for name, default in REFERENCE_RECIPE.items():
        if getattr(config, name) is not None:
            continue
        if head and name in ("use_bn_in_head", "norm_last_layer"):
            key = "use_bn" if name == "use_bn_in_head" else name
            values[name], sources[name] = bool(head[key]), "the loaded head"
        elif name in recipe.values:
            values[name], sources[name] = recipe.values[name], recipe.notes[name]
        else:
            values[name], sources[name] = default, "reference default"
    if config.momentum is None:
        base, reference_batch, origin = REFERENCE_MOMENTUM, REFERENCE_BATCH, "reference"
        if "momentum" in recipe.values:
            base, origin = float(recipe.values["momentum"]), "checkpoint args"
            reference_batch = recipe.batch or REFERENCE_BATCH
        batch = config.batch_size * world_size
        values["momentum"] = momentum_for_batch(base, batch, reference_batch)
        sources["momentum"] = (
            f"{origin} {base:g} at batch {reference_batch}, per image: "
            f"{base:g} ** ({batch} / {reference_batch})"
        )
    global_size = config.global_size or native_size
    local_size = config.local_size or max(
        patch_size, round(global_size * 96 / 224 / patch_size) * patch_size
    )
    for name, size in (("global_size", global_size), ("local_size", local_size)):
        if size % patch_size:
            raise ValueError(f"{name}={size} is not a multiple of the patch size {patch_size}")
    sources |= {
        k: "the backbone's native size" if k == "global_size" else "96/224 of the global size"
        for k in ("global_size", "local_size")
        if getattr(config, k) is None
    }
    warmup = config.warmup_epochs
    if warmup is None:
        warmup = min(10.0, max(0.1 * config.epochs, 0.0))
        sources["warmup_epochs"] = "10% of the run, at most 10 epochs"
    start = "fine-tuning" if fine_tune else "from scratch"
    koleo = config.koleo
    if koleo is None:
        # DINOv2's weight from scratch: it keeps a short run's features apart while the
        # targets form (docs/finetuning.md); off when fine-tuning weights trained without it.
        koleo = DINOV2_KOLEO_WEIGHT if not fine_tune and config.batch_size >= 2 else 0.0
        sources["koleo"] = f"auto ({start})"
    head_warmup = config.head_warmup_epochs
    if head_warmup is None:
        head_warmup = 1.0 if fine_tune and head_out_dim is None and config.epochs > 1 else 0.0
        sources["head_warmup_epochs"] = (
            "the weights bring their head" if head_out_dim else f"auto ({start})"
        )
    if config.lr is None:
        sources["lr"] = f"auto ({start})"
    if config.layer_decay is None:
        sources["layer_decay"] = f"auto ({start})"
    if config.out_dim is None:
        sources["out_dim"] = "the loaded head" if head_out_dim else "~20 images per prototype"
    resolved = dataclasses.replace(
        config,
        lr=config.lr if config.lr is not None else (1e-4 if fine_tune else 5e-4),
        warmup_epochs=warmup,
        layer_decay=config.layer_decay or (0.75 if fine_tune else 1.0),
        head_warmup_epochs=head_warmup,
        koleo=koleo,
        out_dim=head_out_dim or config.out_dim or auto_out_dim(n_images),
        global_size=global_size,
        local_size=local_size,
        **values,
    )
    return resolved, sources


def steps_per_epoch(n_images: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps in one epoch (incomplete last batches are dropped, as the reference)."""
    per_rank = math.ceil(n_images / world_size)
    steps = per_rank // batch_size
    if steps == 0:
        raise ValueError(
            f"{n_images} images are fewer than one batch of {batch_size} per process; "
            "lower --batch-size or add images"
        )
    return steps
