"""``dinokit train``: flags -> :class:`TrainConfig` (defaults <- YAML <- saved run <- flags)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..dino import defaults as ref
from ..dino.koleo import DINOV2_KOLEO_WEIGHT
from ..training import TrainConfig
from ..training.resolve import (
    CPU_BATCH,
    CUDA_BATCH,
    FINE_TUNING_LAYER_DECAY,
    FINE_TUNING_LR,
    SMALL_IMAGES,
    SMALL_IMAGES_BATCH,
    SMALL_SCRATCH_LR,
)

logger = logging.getLogger(__name__)

# (flag, config field, type, help); flags default to None so only given ones override.
# "*": the reference's value (dinokit.dino.defaults) unless a recorded recipe has another.
_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--model", "model", str, "backbone name, timm:<name>, run folder or weights file"),
    ("--weights", "weights", str, "weights file, or 'none' to train from scratch"),
    ("--epochs", "epochs", int, f"epochs (default {TrainConfig.epochs})"),
    (
        "--budget",
        "budget",
        str,
        "the run's length as time (15m, 2h, 1h30m) or steps (500): every schedule spans it, "
        "the run ends at it with its exports (overrides --epochs)",
    ),
    (
        "--batch-size",
        "batch_size",
        int,
        f"images per step and process (auto: {SMALL_IMAGES_BATCH} for crops <= {SMALL_IMAGES} "
        f"px, else {CPU_BATCH} on a CPU, {CUDA_BATCH} per GPU; at most 1/4 of the images)",
    ),
    ("--max-steps", "max_steps", int, "stop at step N (schedules span the run; not resumed)"),
    (
        "--lr",
        "lr",
        float,
        f"base lr per {ref.LR_BATCH} images (auto: {ref.BASE_LR:g} scratch, "
        f"{SMALL_SCRATCH_LR:g} scratch on small images, {FINE_TUNING_LR:g} fine-tuning)",
    ),
    ("--min-lr", "min_lr", float, f"final lr ({ref.MIN_LR:g})"),
    (
        "--warmup-epochs",
        "warmup_epochs",
        float,
        f"lr warm-up (auto: 10%% of the run, <= {ref.LR_WARMUP_EPOCHS})",
    ),
    ("--weight-decay", "weight_decay", float, f"initial weight decay ({ref.WEIGHT_DECAY:g}*)"),
    (
        "--weight-decay-end",
        "weight_decay_end",
        float,
        f"final weight decay ({ref.WEIGHT_DECAY_END:g}*)",
    ),
    (
        "--clip-grad",
        "clip_grad",
        float,
        f"per-parameter gradient norm clip ({ref.CLIP_GRAD:g}*, 0 = off)",
    ),
    (
        "--layer-decay",
        "layer_decay",
        float,
        f"layer-wise lr decay (auto: {FINE_TUNING_LAYER_DECAY:g} fine-tuning)",
    ),
    ("--freeze-blocks", "freeze_blocks", int, "freeze patch embedding and the first N blocks"),
    (
        "--head-warmup-epochs",
        "head_warmup_epochs",
        float,
        "train only the head first (auto when fine-tuning with a new head: 25%% of the run, "
        "<= 1 epoch)",
    ),
    ("--drop-path", "drop_path", float, f"student stochastic depth ({ref.DROP_PATH:g}*)"),
    ("--out-dim", "out_dim", int, "prototypes (auto: ~20 images each, or the loaded head's)"),
    (
        "--freeze-last-layer",
        "freeze_last_layer",
        float,
        f"epochs with the last layer frozen (auto: 1%% of the run, <= {ref.FREEZE_LAST_LAYER:g}*)",
    ),
    (
        "--teacher-temp",
        "teacher_temp",
        float,
        f"teacher temperature after warm-up ({ref.TEACHER_TEMP:g}*)",
    ),
    (
        "--warmup-teacher-temp",
        "warmup_teacher_temp",
        float,
        f"initial teacher temp ({ref.WARMUP_TEACHER_TEMP:g}*)",
    ),
    (
        "--warmup-teacher-temp-epochs",
        "warmup_teacher_temp_epochs",
        int,
        f"teacher temp warm-up ({ref.WARMUP_TEACHER_TEMP_EPOCHS}*)",
    ),
    ("--centering", "centering", str, "teacher centring: center (DINO) or sinkhorn (DINOv2)"),
    (
        "--use-bn-in-head",
        "use_bn_in_head",
        bool,
        f"BatchNorm after the head's hidden layers "
        f"(reference flag; {'on' if ref.USE_BN_IN_HEAD else 'off'}*)",
    ),
    (
        "--norm-last-layer",
        "norm_last_layer",
        bool,
        f"keep the last layer's weight norm at 1 "
        f"(reference flag; {'on' if ref.NORM_LAST_LAYER else 'off'}*)",
    ),
    (
        "--koleo",
        "koleo",
        float,
        f"KoLeo weight (auto: {DINOV2_KOLEO_WEIGHT:g} from scratch, 0 fine-tuning)",
    ),
    (
        "--momentum",
        "momentum",
        float,
        f"teacher EMA momentum, cosine to 1 (auto: {ref.TEACHER_MOMENTUM:g}* at batch "
        f"{ref.TEACHER_MOMENTUM_BATCH}, {ref.TEACHER_MOMENTUM:g} ** "
        f"(batch / {ref.TEACHER_MOMENTUM_BATCH}) at the run's total batch)",
    ),
    ("--local-crops", "local_crops", int, f"local crops per image ({ref.N_LOCAL_CROPS}*)"),
    ("--global-size", "global_size", int, "global crop size (auto: native size)"),
    (
        "--local-size",
        "local_size",
        int,
        f"local crop size (auto: {ref.LOCAL_SIZE}/{ref.GLOBAL_SIZE} of global)",
    ),
    ("--precision", "precision", str, "auto | bf16 | fp16 | fp32"),
    ("--device", "device", str, "auto | cpu | cuda | cuda:N"),
    ("--workers", "workers", int, "data loader processes"),
    ("--seed", "seed", int, f"random seed ({TrainConfig.seed})"),
    ("--save-every", "save_every", int, "also checkpoint every N steps"),
    ("--keep-every", "keep_every", int, "keep a checkpoint copy every N epochs"),
    ("--log-every", "log_every", int, f"metrics.jsonl every N steps ({TrainConfig.log_every})"),
    ("--eval-train", "eval_train", str, "labelled folder: kNN monitor references"),
    ("--eval-val", "eval_val", str, "labelled folder: kNN monitor queries"),
    ("--eval-every", "eval_every", int, f"kNN monitor every N epochs ({TrainConfig.eval_every})"),
    (
        "--logger",
        "logger",
        str,
        "jsonl (metrics.jsonl) or tensorboard (also TensorBoard events in the run folder; "
        "pip install 'dinokit[tensorboard]')",
    ),
)


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="fine-tune (or pretrain) with DINO on image folders",
        description="DINO self-supervised training on one or more image folders or list files.",
        epilog="* the reference's value, used unless an official full checkpoint given as "
        "--weights recorded another in its args (config.yaml notes where each came from).",
    )
    parser.add_argument("data", nargs="*", help="image folders (recursive) or list files")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--config", help="YAML file with any of the options below")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a bar")
    for flag, dest, kind, text in _OPTIONS:
        if kind is bool:  # --flag / --no-flag; unset leaves the YAML or default value
            parser.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    parser.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> Any:
    """Merge defaults, ``--config`` YAML, the saved config of a resumed run, and flags."""
    from ..config_io import read_yaml
    from ..training.config import CONFIG_FILE

    values: dict[str, Any] = {}
    if args.config:
        values.update(read_yaml(args.config))
    saved = Path(args.out) / CONFIG_FILE
    given = {dest: getattr(args, dest) for _, dest, _, _ in _OPTIONS}
    if args.resume and saved.is_file():
        # max_steps stops one invocation early; a resumed run goes on unless given again.
        # The steps its budget or epochs became hold, unless a new length is given.
        new_length = given["epochs"] is not None or given["budget"] is not None
        dropped = {"max_steps", "steps"} if new_length else {"max_steps"}
        values.update({k: v for k, v in read_yaml(saved).items() if k not in dropped})
    values.update({k: v for k, v in given.items() if v is not None})
    if args.data:
        values["data"] = list(args.data)
    values.update(out=args.out, resume=args.resume)
    if args.no_progress:
        values["progress"] = False
    return TrainConfig.from_dict(values, source=args.config or "options")


def run(args: argparse.Namespace) -> int:
    """Train; on Ctrl-C the checkpoint is saved and the exit code is 130."""
    from ..training import train
    from ..training.runlog import BEST_TEACHER

    out = train(build_config(args))
    best = f", {BEST_TEACHER}" if (out / BEST_TEACHER).is_file() else ""
    print(f"run saved in {out}: teacher.safetensors{best}, student.safetensors, metrics.jsonl")
    return 0
