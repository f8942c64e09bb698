"""Resolving a run's automatic values, once, before the run starts.

:func:`resolve_config` turns the request (:class:`TrainConfig`, ``None`` = auto) into a
:class:`ResolvedConfig`. Precedence: a value the user set (flag, YAML, keyword) > the loaded
head's shape > the recipe recorded with the weights (an official full checkpoint's ``args``)
> dinokit's rules, which depend on whether the run fine-tunes or trains from scratch > the
reference's defaults (:mod:`dinokit.dino.defaults`). Each rule below fills one value or one
group, as ``{field: (value, where it came from)}``; only the fields the user left on auto
take it. ``docs/training.md`` gives the why of each rule.
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
from .config import ResolvedConfig, TrainConfig, is_fine_tuning
from .recipe import RECIPE_ARGS, momentum_for_batch, show
from .start import StartingPoint

logger = logging.getLogger(__name__)

Filled = dict[str, tuple[Any, str]]

#: Fine-tuning's own values (measured in docs/finetuning.md): the reference's lr destroys
#: pretrained features, and early blocks should move least.
FINE_TUNING_LR = 1e-4
FINE_TUNING_LAYER_DECAY = 0.75
#: Epochs a new head trains alone on top of pretrained features (backbone frozen).
NEW_HEAD_WARMUP_EPOCHS = 1.0
#: The lr warm-up takes this fraction of the run, at most the reference's 10 epochs.
LR_WARMUP_FRACTION = 0.1
# The paper's 65,536 prototypes for ImageNet's 1,281,167 images: about 20 images each.
IMAGES_PER_PROTOTYPE = 20
MIN_AUTO_OUT_DIM = 256


@dataclass(frozen=True)
class Facts:
    """What the rules read besides the request."""

    start: StartingPoint
    fine_tuning: bool
    n_images: int | None
    world_size: int

    @property
    def start_kind(self) -> str:
        return "fine-tuning" if self.fine_tuning else "from scratch"


def resolve_config(
    request: TrainConfig,
    start: StartingPoint,
    *,
    n_images: int | None = None,
    world_size: int = 1,
    device: torch.device | None = None,
    recorded: Mapping[str, Any] | None = None,
) -> ResolvedConfig:
    """Every *auto* value of ``request`` resolved, with where each came from.

    Args:
        request: The requested config.
        start: The backbone and what its weights file brings (head, recipe).
        n_images: Training images (sets the automatic ``out_dim``), if known.
        world_size: Processes (the momentum rule follows the total batch).
        device: This process's device (the automatic precision); the CPU when None.
        recorded: A resumed run's checkpoint metadata: the first run's notes are kept for
            the values that did not change.

    Raises:
        ValueError: a value the user set contradicts the loaded head, or a crop size is not
            a multiple of the patch size.
    """
    _check_loaded_head(request, start.head)
    values = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    if request.weights is None and start.weights is None:
        values["weights"] = NO_WEIGHTS  # e.g. vit_test: no official file, so from scratch
    facts = Facts(
        start=start,
        fine_tuning=is_fine_tuning(values["weights"]),
        n_images=n_images,
        world_size=world_size,
    )
    sources: dict[str, str] = {}
    for rule in RULES:
        for name, (value, source) in rule(request, facts).items():
            if getattr(request, name) is None:
                values[name], sources[name] = value, source
    values["precision"] = resolve_precision(request.precision, device or torch.device("cpu"))
    if request.precision == "auto":
        sources["precision"] = f"{values['precision']} on this machine"
    _check_crop_sizes(values, start.backbone.patch_size)
    config = ResolvedConfig(**values, sources=sources)
    kept = _recorded_sources(config.record(), recorded)
    return dataclasses.replace(config, sources=kept | sources) if kept else config


# ---- the rules, one per value or group ---------------------------------------------------


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
        base, origin = float(recipe.values["momentum"]), "checkpoint args"
        reference_batch = recipe.batch or defaults.TEACHER_MOMENTUM_BATCH
    batch = request.batch_size * facts.world_size
    source = (
        f"{origin} {base:g} at batch {reference_batch}, per image: "
        f"{base:g} ** ({batch} / {reference_batch})"
    )
    return {"momentum": (momentum_for_batch(base, batch, reference_batch), source)}


def _crop_sizes(request: TrainConfig, facts: Facts) -> Filled:
    """Global crops at the backbone's native size, local ones at 96/224 of the global size
    (the reference's ratio), rounded to the patch size."""
    native, patch = facts.start.backbone.preprocessing.size, facts.start.backbone.patch_size
    global_size = request.global_size or native
    ratio = defaults.LOCAL_SIZE / defaults.GLOBAL_SIZE
    local_size = max(patch, round(global_size * ratio / patch) * patch)
    return {
        "global_size": (global_size, "the backbone's native size"),
        "local_size": (local_size, "96/224 of the global size"),
    }


def _lr_warmup(request: TrainConfig, facts: Facts) -> Filled:
    """10% of the run, at most the reference's 10 epochs (which are 10% of its 100)."""
    warmup = min(float(defaults.LR_WARMUP_EPOCHS), max(LR_WARMUP_FRACTION * request.epochs, 0.0))
    return {"warmup_epochs": (warmup, "10% of the run, at most 10 epochs")}


def _fine_tuning_values(request: TrainConfig, facts: Facts) -> Filled:
    """lr, layer decay and KoLeo: the reference's from scratch (and DINOv2's KoLeo, which
    keeps a short run's features apart while the targets form); lower lr, layer decay and no
    KoLeo when fine-tuning weights trained without it."""
    source = f"auto ({facts.start_kind})"
    if facts.fine_tuning:
        return {
            "lr": (FINE_TUNING_LR, source),
            "layer_decay": (FINE_TUNING_LAYER_DECAY, source),
            "koleo": (0.0, source),
        }
    koleo = DINOV2_KOLEO_WEIGHT if request.batch_size >= 2 else 0.0  # no other image to spread
    return {
        "lr": (defaults.BASE_LR, source),
        "layer_decay": (1.0, source),
        "koleo": (koleo, source),
    }


def _head_warmup(request: TrainConfig, facts: Facts) -> Filled:
    """A new head on pretrained features trains alone first (one epoch, if the run is
    longer); a head that came with the weights needs none."""
    if facts.start.head is not None:
        return {"head_warmup_epochs": (0.0, "the weights bring their head")}
    warmup = NEW_HEAD_WARMUP_EPOCHS if facts.fine_tuning and request.epochs > 1 else 0.0
    return {"head_warmup_epochs": (warmup, f"auto ({facts.start_kind})")}


def _out_dim(request: TrainConfig, facts: Facts) -> Filled:
    """The loaded head's prototypes, else about 20 training images per prototype."""
    if facts.start.head is not None:
        return {"out_dim": (facts.start.head.out_dim, "the loaded head")}
    return {"out_dim": (auto_out_dim(facts.n_images), "~20 images per prototype")}


RULES: tuple[Callable[[TrainConfig, Facts], Filled], ...] = (
    _recipe_values,
    _momentum,
    _crop_sizes,
    _lr_warmup,
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


def log_sources(config: ResolvedConfig) -> None:
    """One line per value taken from the weights' recorded recipe or a rule, the rest
    (plain defaults) in one debug line."""
    plain = []
    for name, source in config.sources.items():
        value = getattr(config, name)
        if source.startswith(("checkpoint args", "the loaded head")) or name == "momentum":
            logger.info("%s=%s (from %s)", name, show(value), source)
        else:
            plain.append(f"{name}={show(value)} ({source})")
    logger.debug("automatic values: %s", ", ".join(plain))
