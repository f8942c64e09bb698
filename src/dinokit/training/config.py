"""Every knob of a DINO training run: what the user asks for, and what the run uses.

:class:`TrainConfig` is the request (defaults <- YAML <- flags or keywords), in which a
value left at ``None`` is *auto*. Before a run starts, :func:`dinokit.training.resolve.
resolve_config` turns it, once, into a frozen :class:`ResolvedConfig` in which every value
is concrete and every automatic one carries where it came from; the run reads only that,
and writes it to ``config.yaml``. Defaults are the reference's
(facebookresearch/dino ``main_dino.py``, :mod:`dinokit.dino.defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_io import from_dict, to_yaml_dict, write_yaml
from ..dino import defaults
from ..models.factory import NO_WEIGHTS
from ..runtime.machine import default_workers
from .budget import parse_budget

CONFIG_FILE = "config.yaml"
"""The resolved config of a run, in its folder (what ``--resume`` reads back)."""
LOGGERS = ("jsonl", "tensorboard")
"""Where training metrics go: ``metrics.jsonl`` always, TensorBoard events too."""


@dataclass(frozen=True, kw_only=True)
class _Settings:
    """The values that are never automatic: the same in a request and in a resolved config.

    ``None`` here is not *auto*: ``weights: None`` is the model's official weights,
    ``budget: None`` a run of ``epochs``, ``max_steps: None`` no early stop,
    ``eval_train``/``eval_val: None`` no kNN monitor.
    """

    data: list[str] = field(default_factory=list)
    model: str = "dino_vits16"
    weights: str | None = None
    out: str = "runs/dino"
    # Length: epochs, or a budget of time ("15m", "2h") or steps ("500") that every
    # schedule spans (the budget wins over epochs).
    epochs: int = 20
    budget: str | None = None
    max_steps: int | None = None  # stop early (the schedules still span the run)
    # Optimisation, DINO head and loss.
    min_lr: float = defaults.MIN_LR
    freeze_blocks: int = 0
    hidden_dim: int = defaults.HIDDEN_DIM
    bottleneck_dim: int = defaults.BOTTLENECK_DIM
    student_temp: float = defaults.STUDENT_TEMP
    center_momentum: float = defaults.CENTER_MOMENTUM
    centering: str = "center"  # center (DINO's EMA centre) | sinkhorn (DINOv2's Sinkhorn-Knopp)
    # Machine: where to run (auto | cpu | cuda | cuda:N), picked per process by the runtime.
    device: str = "auto"
    workers: int = field(default_factory=lambda: default_workers(cap=4))
    seed: int = 0
    # Outputs.
    save_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    keep_every: int = 0  # keep checkpoints/epoch_XXXX.pt every N epochs (0: last.pt only)
    log_every: int = 10
    eval_train: str | None = None
    eval_val: str | None = None
    eval_every: int = 1
    knn_k: int = 20  # DINO's kNN monitor (eval_knn.py)
    logger: str = "jsonl"  # jsonl (metrics.jsonl) | tensorboard (also TensorBoard events)
    progress: bool = True
    resume: bool = False

    @property
    def fine_tuning(self) -> bool:
        """Whether the run starts from pretrained weights (anything but ``weights: none``)."""
        return is_fine_tuning(self.weights)


def is_fine_tuning(weights: str | None) -> bool:
    """Whether ``weights`` names pretrained weights (anything but ``none``)."""
    return not (isinstance(weights, str) and weights.lower() == NO_WEIGHTS)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(_Settings):
    """Configuration of ``dinokit train``; see ``docs/training.md`` for the why of each value.

    Data and model:
        data: Image folders (recursive) or list files; labels are ignored.
        model: Backbone name (``dino_vits16``, ``timm:<name>``...), run folder or weights file.
        weights: ``None`` = official pretrained weights, ``"none"`` = random init (from
            scratch), or a weights file (a DINO full checkpoint also brings its head and
            centre).
        out: Run folder.

    Length: ``epochs``, or ``budget``: wall-clock time (``"15m"``, ``"2h"``) or steps
    (``"500"``) that every schedule spans (:mod:`dinokit.training.budget`); ``steps`` is what
    the run became (auto: epochs x steps per epoch, or what the budget buys).

    The fields below default to *auto* (``None``): each is resolved when the run starts by
    one rule of :mod:`dinokit.training.resolve`, from the loaded head, the recipe recorded
    with the weights, whether the run fine-tunes or trains from scratch, and the reference.
    """

    # Length and batch.
    steps: int | None = None  # auto: epochs x steps per epoch, or what the budget buys
    batch_size: int | None = None  # per process; auto: by crop size, at most 1/4 of the data
    # Optimisation (reference: AdamW, lr per 256 images, linear warm-up, cosine).
    lr: float | None = None  # per 256 images; auto: lower when fine-tuning
    warmup_epochs: float | None = None  # auto: 10% of the run, at most the reference's
    weight_decay: float | None = None  # auto: the recorded recipe's, else the reference's
    weight_decay_end: float | None = None  # auto: the recorded recipe's, else the reference's
    clip_grad: float | None = None  # per-parameter gradient norm clip (0 disables)
    layer_decay: float | None = None  # auto: 1.0 from scratch, lower when fine-tuning
    head_warmup_epochs: float | None = None  # auto: 1 epoch when fine-tuning with a new head
    drop_path: float | None = None  # stochastic depth of the student only
    # DINO head and loss.
    out_dim: int | None = None  # prototypes; auto: ~20 images each (paper), or the loaded head's
    norm_last_layer: bool | None = None  # auto: the loaded head's / recipe's, else the reference's
    use_bn_in_head: bool | None = None  # BatchNorm after the head's hidden layers
    freeze_last_layer: float | None = None  # epochs with the last head layer frozen
    warmup_teacher_temp: float | None = None
    teacher_temp: float | None = None
    warmup_teacher_temp_epochs: int | None = None  # auto: what the recipe has left
    koleo: float | None = None  # KoLeo weight on student CLS tokens; auto: on from scratch only
    # Teacher EMA, cosine to 1 per step; auto: the reference's (or the recipe's) at its batch,
    # kept per image at this run's total batch (recipe.momentum_for_batch).
    momentum: float | None = None
    # Multi-crop.
    local_crops: int | None = None
    global_size: int | None = None  # auto: the backbone's native size
    local_size: int | None = None  # auto: 96/224 of the global size, a patch multiple
    global_scale: tuple[float, float] | None = None
    local_scale: tuple[float, float] | None = None
    precision: str = "auto"  # auto | bf16 | fp16 | fp32

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
        if self.epochs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError("epochs and batch_size must be >= 1")
        if self.steps is not None and self.steps < 1:
            raise ValueError("steps must be >= 1")
        if self.budget is not None:
            parse_budget(self.budget)
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32, not {self.precision}")
        if self.logger not in LOGGERS:
            raise ValueError(f"logger must be one of {', '.join(LOGGERS)}, not {self.logger}")
        if self.centering not in ("center", "sinkhorn"):
            raise ValueError(f"centering must be center or sinkhorn, not {self.centering}")
        if self.koleo is not None and not self.koleo >= 0:
            raise ValueError(f"koleo must be >= 0 (0 disables it), not {self.koleo}")
        if self.koleo and self.batch_size is not None and self.batch_size < 2:
            raise ValueError("koleo needs a batch of at least 2 images per process; use --koleo 0")
        if self.local_crops is not None and self.local_crops < 0:
            raise ValueError("local_crops must be >= 0")
        if self.momentum is not None and not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], not {self.momentum}")
        if (self.eval_train is None) != (self.eval_val is None):
            raise ValueError("the kNN monitor needs both eval_train and eval_val")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError("layer_decay must be in (0, 1]")


@dataclass(frozen=True, kw_only=True)
class ResolvedConfig(_Settings):
    """The values a run uses: :class:`TrainConfig` with every *auto* value resolved.

    Built once, before the run starts (:func:`dinokit.training.resolve.resolve_config`), and
    never changed. ``sources`` says where each value that was *auto* came from (the loaded
    head, the checkpoint's recorded args, a rule, the reference's default); a field without
    a source was set by the user. :meth:`record` is what ``config.yaml`` holds.
    """

    steps: int
    batch_size: int
    lr: float
    warmup_epochs: float
    weight_decay: float
    weight_decay_end: float
    clip_grad: float
    layer_decay: float
    head_warmup_epochs: float
    drop_path: float
    out_dim: int
    norm_last_layer: bool
    use_bn_in_head: bool
    freeze_last_layer: float
    warmup_teacher_temp: float
    teacher_temp: float
    warmup_teacher_temp_epochs: int
    koleo: float
    momentum: float
    local_crops: int
    global_size: int
    local_size: int
    global_scale: tuple[float, float]
    local_scale: tuple[float, float]
    precision: str  # bf16 | fp16 | fp32
    sources: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The config as ``config.yaml`` and checkpoints record it: a request that repeats
        this run (``resume`` off; a precision left on auto stays auto, as it depends on the
        machine that resumes)."""
        values = to_yaml_dict(self)
        del values["sources"]
        if "precision" in self.sources:
            values["precision"] = "auto"
        return values | {"resume": False}


def write_run_config(out: Path, config: ResolvedConfig) -> None:
    """``config.yaml`` of the run in ``out``: the values and, as comments, where the
    automatic ones came from."""
    write_yaml(out / CONFIG_FILE, config.record(), comments=config.sources)
