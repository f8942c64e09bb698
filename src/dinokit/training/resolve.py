"""Resolving a run's automatic values, once, before the run starts.

:func:`resolve_config` turns the request (:class:`TrainConfig`, ``None`` = auto) into a
:class:`ResolvedConfig`. Precedence: a value the user set (flag, YAML, keyword) > the loaded
head's shape > the recipe recorded with the weights (an official full checkpoint's ``args``)
> dinokit's rules, which depend on whether the run fine-tunes or trains from scratch > the
reference's defaults (:mod:`dinokit.dino.defaults`). Each rule below fills one value or one
group, as ``{field: (value, where it came from)}``; only the fields the user left on auto
take it. ``docs/training.md`` gives the why of each rule.

The run's length comes first (:class:`Facts`): epochs, or a budget of steps, or a budget of
time turned into steps by the measured time per step. Every warm-up and freeze is then a
share of that length, so a 15-minute run has the same shape as a 100-epoch one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..dino import defaults
from ..dino.head import HeadShape
from ..dino.koleo import DINOV2_KOLEO_WEIGHT
from ..models.factory import NO_WEIGHTS
from ..runtime.precision import resolve_precision
from .budget import epochs_note, parse_budget, steps_for_time
from .config import ResolvedConfig, TrainConfig, is_fine_tuning
from .data import steps_per_epoch
from .recipe import ARGS_ORIGIN, RECIPE_ARGS, RUN_ORIGIN, momentum_for_batch, show
from .start import StartingPoint

logger = logging.getLogger(__name__)

Filled = dict[str, tuple[Any, str]]

#: Fine-tuning's own values (measured in docs/finetuning.md): the reference's lr destroys
#: pretrained features, and early blocks should move least.
FINE_TUNING_LR = 1e-4
FINE_TUNING_LAYER_DECAY = 0.75
#: Epochs a new head trains alone on top of pretrained features (backbone frozen), at most
#: this fraction of the run.
NEW_HEAD_WARMUP_EPOCHS = 1.0
NEW_HEAD_WARMUP_FRACTION = 0.25
#: The lr warm-up takes this fraction of the run, at most the reference's 10 epochs.
LR_WARMUP_FRACTION = 0.1
#: The last layer stays frozen for this fraction of the run, at most the reference's 1 epoch
#: (1 of its 100).
FREEZE_LAST_LAYER_FRACTION = 0.01
#: Global crops of at most this many pixels are "small images" (CIFAR-sized, thumbnails).
SMALL_IMAGES = 64
#: From scratch on small images: the recipe measured in docs/finetuning.md (section 1), where
#: the reference's (made for 100+ epochs of ViT-S/16 at 224 px on a batch of 1024) barely moves
#: a short run: a higher lr, BatchNorm in the head, no stochastic depth, 4 local crops, and a
#: teacher that follows the student (momentum 0.99 at batch 128, per image).
SMALL_SCRATCH_LR = 4e-3
SMALL_SCRATCH_LOCAL_CROPS = 4
SMALL_SCRATCH_MOMENTUM, SMALL_SCRATCH_MOMENTUM_BATCH = 0.99, 128
#: Automatic batch per process: small images fill the machine only in larger batches.
SMALL_IMAGES_BATCH, CPU_BATCH, CUDA_BATCH = 128, 32, 64
#: An automatic batch leaves at least this many steps in an epoch.
MIN_STEPS_PER_EPOCH = 4
#: A local crop is at least this many patches wide (3 x 3 patch tokens teach little).
MIN_LOCAL_PATCHES = 4
# The paper's 65,536 prototypes for ImageNet's 1,281,167 images: about 20 images each.
IMAGES_PER_PROTOTYPE = 20
MIN_AUTO_OUT_DIM = 256


@dataclass(frozen=True)
class StepTime:
    """A time budget's measure: ``seconds`` per step, measured over ``timed`` steps, with
    ``spent`` seconds of the budget already used (start-up, the measurement itself)."""

    seconds: float
    timed: int
    spent: float


@dataclass(frozen=True)
class Facts:
    """What the rules read besides the request, the run's shape included."""

    start: StartingPoint
    fine_tuning: bool
    n_images: int | None
    world_size: int
    global_size: int
    batch: int  # per process
    batch_note: str
    steps_per_epoch: int
    steps: int  # the run's length
    steps_note: str

    @property
    def start_kind(self) -> str:
        return "fine-tuning" if self.fine_tuning else "from scratch"

    @property
    def run_epochs(self) -> float:
        """The run's length in epochs (fractional when a budget ends it inside one)."""
        return self.steps / self.steps_per_epoch

    @property
    def small_images(self) -> bool:
        return self.global_size <= SMALL_IMAGES

    @property
    def small_scratch(self) -> bool:
        """From scratch on small images: the measured recipe applies."""
        return not self.fine_tuning and self.small_images


def resolve_config(
    request: TrainConfig,
    start: StartingPoint,
    *,
    n_images: int | None = None,
    world_size: int = 1,
    device: torch.device | None = None,
    recorded: Mapping[str, Any] | None = None,
    step_time: StepTime | None = None,
) -> ResolvedConfig:
    """Every *auto* value of ``request`` resolved, with where each came from.

    Args:
        request: The requested config.
        start: The backbone and what its weights file brings (head, recipe).
        n_images: Training images (the automatic ``out_dim``, batch and steps per epoch), if
            known.
        world_size: Processes (the momentum rule follows the total batch).
        device: This process's device (the automatic precision and batch); the CPU when None.
        recorded: A resumed run's checkpoint metadata: the first run's notes are kept for
            the values that did not change.
        step_time: The measured time per step, which turns a time budget into steps; without
            it a time budget's length is provisional (the run's ``epochs``), enough to build
            the networks and measure the steps.

    Raises:
        ValueError: a value the user set contradicts the loaded head, or a crop size is not
            a multiple of the patch size.
    """
    _check_loaded_head(request, start.head)
    values = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    if request.weights is None and start.weights is None:
        values["weights"] = NO_WEIGHTS  # e.g. vit_test: no official file, so from scratch
    facts = _facts(
        request,
        start,
        fine_tuning=is_fine_tuning(values["weights"]),
        n_images=n_images,
        world_size=world_size,
        device=device,
        step_time=step_time,
    )
    sources: dict[str, str] = {}
    for rule in RULES:
        for name, (value, source) in rule(request, facts).items():
            if getattr(request, name) is None:
                values[name], sources[name] = value, source
    values["epochs"] = math.ceil(facts.steps / facts.steps_per_epoch)
    if request.budget is not None:
        sources["epochs"] = epochs_note(request.budget, facts.run_epochs)
    values["precision"] = resolve_precision(request.precision, device or torch.device("cpu"))
    if request.precision == "auto":
        sources["precision"] = f"{values['precision']} on this machine"
    _check_crop_sizes(values, start.backbone.patch_size)
    config = ResolvedConfig(**values, sources=sources)
    kept = _recorded_sources(config.record(), recorded)
    return dataclasses.replace(config, sources=kept | sources) if kept else config


def _facts(
    request: TrainConfig,
    start: StartingPoint,
    *,
    fine_tuning: bool,
    n_images: int | None,
    world_size: int,
    device: torch.device | None,
    step_time: StepTime | None,
) -> Facts:
    """The run's shape: crop size, batch, steps per epoch and length, in that order (each
    depends on the one before)."""
    global_size = request.global_size or start.backbone.preprocessing.size
    cuda = device is not None and device.type == "cuda"
    batch, batch_note = auto_batch(global_size, n_images, world_size=world_size, cuda=cuda)
    if request.batch_size is not None:
        batch = request.batch_size
    per_epoch = steps_per_epoch(n_images, batch, world_size) if n_images else 1
    steps, steps_note = _run_length(request, per_epoch, step_time)
    return Facts(
        start=start,
        fine_tuning=fine_tuning,
        n_images=n_images,
        world_size=world_size,
        global_size=global_size,
        batch=batch,
        batch_note=batch_note,
        steps_per_epoch=per_epoch,
        steps=steps,
        steps_note=steps_note,
    )


def auto_batch(
    global_size: int, n_images: int | None, *, world_size: int = 1, cuda: bool = False
) -> tuple[int, str]:
    """The automatic batch per process, and why.

    Small images (global crops of at most :data:`SMALL_IMAGES` px) fill the machine only in
    large batches: 128. Larger ones: the reference's 64 per GPU, 32 on a CPU. Either way at
    most the power of two that leaves :data:`MIN_STEPS_PER_EPOCH` steps in an epoch.
    """
    if global_size <= SMALL_IMAGES:
        batch, why = SMALL_IMAGES_BATCH, f"global crops of {global_size} px"
    else:
        batch, why = (CUDA_BATCH, "per GPU (reference)") if cuda else (CPU_BATCH, "on a CPU")
    if n_images:
        per_process = max(n_images // (world_size * MIN_STEPS_PER_EPOCH), 1)
        cap = 2 ** int(math.log2(per_process))
        if cap < batch:
            return cap, f"{MIN_STEPS_PER_EPOCH}+ steps per epoch of {n_images} images"
    return batch, why


def _run_length(
    request: TrainConfig, per_epoch: int, step_time: StepTime | None
) -> tuple[int, str]:
    """The run's length in steps: set (a resumed run's), a budget's, or the epochs'."""
    if request.steps is not None:
        return request.steps, "set"
    budget = parse_budget(request.budget) if request.budget is not None else None
    if budget is None:
        return request.epochs * per_epoch, f"{request.epochs} epochs of {per_epoch} steps"
    if budget.steps is not None:
        return budget.steps, f"budget {budget.text}"
    assert budget.seconds is not None
    if step_time is None:
        return request.epochs * per_epoch, "provisional (the step time is not measured yet)"
    steps = steps_for_time(budget.seconds - step_time.spent, step_seconds=step_time.seconds)
    return steps, (
        f"budget {budget.text}: {step_time.seconds:.3g} s per step measured over "
        f"{step_time.timed} steps, {step_time.spent:.0f} s spent before the first"
    )


# ---- the rules, one per value or group ---------------------------------------------------


def _length(request: TrainConfig, facts: Facts) -> Filled:
    """The batch and the number of steps (:class:`Facts` worked them out first)."""
    return {
        "batch_size": (facts.batch, f"auto: {facts.batch_note}"),
        "steps": (facts.steps, facts.steps_note),
    }


def _recipe_values(request: TrainConfig, facts: Facts) -> Filled:
    """The method's values: the loaded head's options, else the recorded recipe's, else the
    reference's."""
    head, recipe = facts.start.head, facts.start.recipe
    filled: Filled = {}
    for name, default in RECIPE_ARGS.values():
        if name == "momentum":
            continue  # its own rule: per image at this run's batch
        if head is not None and name in ("use_bn_in_head", "norm_last_layer"):
            key = "use_bn" if name == "use_bn_in_head" else name
            filled[name] = (bool(getattr(head, key)), "the loaded head")
        elif name in recipe.values:
            filled[name] = (recipe.values[name], recipe.notes[name])
        else:
            filled[name] = (default, "reference default")
    return filled


def _momentum(request: TrainConfig, facts: Facts) -> Filled:
    """The reference's (or the recipe's) momentum at its batch, kept per image at this run's
    total batch: ``m ** (B / B_ref)`` (:func:`~dinokit.training.recipe.momentum_for_batch`)."""
    base, reference_batch = defaults.TEACHER_MOMENTUM, defaults.TEACHER_MOMENTUM_BATCH
    origin = "reference"
    recipe = facts.start.recipe
    if "momentum" in recipe.values:
        base = float(recipe.values["momentum"])
        origin = recipe.origin
        reference_batch = recipe.batch or defaults.TEACHER_MOMENTUM_BATCH
    elif facts.small_scratch:
        base, reference_batch = SMALL_SCRATCH_MOMENTUM, SMALL_SCRATCH_MOMENTUM_BATCH
        origin = "small images from scratch:"
    batch = facts.batch * facts.world_size
    source = (
        f"{origin} {base:g} at batch {reference_batch}, per image: "
        f"{base:g} ** ({batch} / {reference_batch})"
    )
    return {"momentum": (momentum_for_batch(base, batch, reference_batch), source)}


def _crop_sizes(request: TrainConfig, facts: Facts) -> Filled:
    """Global crops at the backbone's native size, local ones at 96/224 of the global size
    (the reference's ratio), rounded to the patch size and at least
    :data:`MIN_LOCAL_PATCHES` patches wide (or half the global size, if that is less); from
    scratch on small images, 4 local crops."""
    patch = facts.start.backbone.patch_size
    ratio = defaults.LOCAL_SIZE / defaults.GLOBAL_SIZE
    wide = min(MIN_LOCAL_PATCHES * patch, facts.global_size // 2 // patch * patch)
    local_size = max(patch, wide, round(facts.global_size * ratio / patch) * patch)
    filled: Filled = {
        "global_size": (facts.global_size, "the backbone's native size"),
        "local_size": (
            local_size,
            f"96/224 of the global size, at least {MIN_LOCAL_PATCHES} patches (or half)",
        ),
    }
    if facts.small_scratch:
        filled["local_crops"] = (SMALL_SCRATCH_LOCAL_CROPS, "small images from scratch")
    return filled


def _spans(request: TrainConfig, facts: Facts) -> Filled:
    """The warm-ups and freezes as shares of the run: the lr warm-up 10% of it, at most the
    reference's 10 epochs (10% of its 100); the last layer frozen for 1% of it, at most the
    reference's 1 epoch (unless the weights' recorded recipe has its own)."""
    run = facts.run_epochs
    filled: Filled = {
        "warmup_epochs": (
            min(float(defaults.LR_WARMUP_EPOCHS), LR_WARMUP_FRACTION * run),
            "10% of the run, at most 10 epochs",
        )
    }
    if "freeze_last_layer" not in facts.start.recipe.values:
        frozen = min(defaults.FREEZE_LAST_LAYER, FREEZE_LAST_LAYER_FRACTION * run)
        filled["freeze_last_layer"] = (frozen, "1% of the run, at most 1 epoch")
    return filled


def _fine_tuning_values(request: TrainConfig, facts: Facts) -> Filled:
    """lr, layer decay and KoLeo: the reference's from scratch (and DINOv2's KoLeo, which
    keeps a short run's features apart while the targets form); lower lr, layer decay and no
    KoLeo when fine-tuning weights trained without it; a dinokit run's own values when it is
    trained further (:func:`~dinokit.training.recipe.recipe_from_run`)."""
    source = f"auto ({facts.start_kind})"
    if facts.fine_tuning:
        filled: Filled = {
            "lr": (FINE_TUNING_LR, source),
            "layer_decay": (FINE_TUNING_LAYER_DECAY, source),
            "koleo": (0.0, source),
        }
        recipe = facts.start.recipe
        for name in ("lr", "layer_decay", "koleo"):
            if name in recipe.values:  # a dinokit run continues as it was trained
                filled[name] = (recipe.values[name], recipe.notes[name])
        return filled
    koleo = DINOV2_KOLEO_WEIGHT if facts.batch >= 2 else 0.0  # no other image to spread
    filled = {
        "lr": (defaults.BASE_LR, source),
        "layer_decay": (1.0, source),
        "koleo": (koleo, source),
    }
    if facts.small_scratch:
        small = "small images from scratch (docs/finetuning.md)"
        filled["lr"] = (SMALL_SCRATCH_LR, small)
        filled["drop_path"] = (0.0, small)
        if facts.start.head is None:
            filled["use_bn_in_head"] = (True, small)
    return filled


def _head_warmup(request: TrainConfig, facts: Facts) -> Filled:
    """A new head on pretrained features trains alone first (one epoch, if the run is
    longer); a head that came with the weights needs none."""
    if facts.start.head is not None:
        return {"head_warmup_epochs": (0.0, "the weights bring their head")}
    if not facts.fine_tuning:
        return {"head_warmup_epochs": (0.0, "auto (from scratch)")}
    warmup = min(NEW_HEAD_WARMUP_EPOCHS, NEW_HEAD_WARMUP_FRACTION * facts.run_epochs)
    return {"head_warmup_epochs": (warmup, "fine-tuning: 25% of the run, at most 1 epoch")}


def _out_dim(request: TrainConfig, facts: Facts) -> Filled:
    """The loaded head's prototypes, else about 20 training images per prototype."""
    if facts.start.head is not None:
        return {"out_dim": (facts.start.head.out_dim, "the loaded head")}
    return {"out_dim": (auto_out_dim(facts.n_images), "~20 images per prototype")}


RULES: tuple[Callable[[TrainConfig, Facts], Filled], ...] = (
    _length,
    _recipe_values,
    _momentum,
    _crop_sizes,
    _spans,
    _fine_tuning_values,
    _head_warmup,
    _out_dim,
)


def auto_out_dim(n_images: int | None) -> int:
    """Prototypes for a dataset of ``n_images``: about 20 images each, as in the paper.

    The DINO paper trains 65,536 prototypes on ImageNet-1k (1.28 M images, ~20 per
    prototype). With a few thousand images that many prototypes leave the centred teacher
    targets nearly uniform and short runs drift to the uniform collapse (docs/finetuning.md).
    The count is the power of two nearest to ``n_images / 20``, within [256, 65536];
    unknown dataset size: 65536.
    """
    if n_images is None:
        return defaults.OUT_DIM
    power = 2 ** round(math.log2(max(n_images, 1) / IMAGES_PER_PROTOTYPE))
    return int(min(defaults.OUT_DIM, max(MIN_AUTO_OUT_DIM, power)))


# ---- checks and notes --------------------------------------------------------------------


def _check_loaded_head(request: TrainConfig, head: HeadShape | None) -> None:
    """A head that came with the weights fixes out_dim and its options: a value the user set
    must agree with it."""
    if head is None:
        return
    if request.out_dim not in (None, head.out_dim):
        raise ValueError(
            f"out_dim={request.out_dim} but the loaded head has {head.out_dim} prototypes; "
            "drop --out-dim to keep the head, or pass a backbone-only weights file"
        )
    if request.use_bn_in_head is not None and request.use_bn_in_head != head.use_bn:
        raise ValueError(
            f"use_bn_in_head={request.use_bn_in_head} but the loaded head "
            f"{'has' if head.use_bn else 'has no'} BatchNorm; drop --use-bn-in-head to keep "
            "the head, or pass a backbone-only weights file"
        )
    if request.norm_last_layer and not head.norm_last_layer:
        raise ValueError(
            "norm_last_layer=True but the loaded head's last layer has learned norms (it was "
            "trained with norm_last_layer false); drop --norm-last-layer to keep them"
        )


def _check_crop_sizes(values: Mapping[str, Any], patch_size: int) -> None:
    for name in ("global_size", "local_size"):
        if values[name] % patch_size:
            raise ValueError(
                f"{name}={values[name]} is not a multiple of the patch size {patch_size}"
            )


def _recorded_sources(
    record: Mapping[str, Any], recorded: Mapping[str, Any] | None
) -> dict[str, str]:
    """A resumed run's notes: the first run's, for the values that did not change since (a
    command-line resume reads every value back from config.yaml, as if the user set it)."""
    if not recorded:
        return {}
    before = recorded.get("train_config", {})
    return {
        name: source
        for name, source in recorded.get("config_sources", {}).items()
        if name in before and record.get(name) == before[name]
    }


RECORDED = (ARGS_ORIGIN, RUN_ORIGIN, "the loaded head")
"""How the notes of values the starting weights brought begin."""


def log_sources(config: ResolvedConfig) -> None:
    """One line per value taken from the weights' recorded recipe or a rule, the rest
    (plain defaults) in one debug line."""
    plain = []
    for name, source in config.sources.items():
        value = getattr(config, name)
        if source.startswith(RECORDED) or name == "momentum":
            logger.info("%s=%s (from %s)", name, show(value), source)
        else:
            plain.append(f"{name}={show(value)} ({source})")
    logger.debug("automatic values: %s", ", ".join(plain))
