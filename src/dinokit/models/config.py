"""Frozen descriptions of a backbone: architecture, preprocessing and official weights.

A :class:`BackboneConfig` travels with the weights (in exported files and checkpoints), so
a model rebuilt from it preprocesses images the way it was trained (the timm
``PretrainedCfg`` idea).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Family = Literal["dino", "dinov2", "dinov3", "timm", "test"]
MlpKind = Literal["mlp", "swiglu"]
# How positional embeddings are resampled at other grids (see :mod:`.pos_embed`).
PosEmbedInterp = Literal["offset", "antialias"]
POS_EMBED_INTERPS: tuple[str, ...] = get_args(PosEmbedInterp)

# ImageNet statistics used by DINO and DINOv2 for training and evaluation.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# DINO's evaluation resizes the short side to 256 then centre-crops 224 (eval_knn.py).
DINO_CROP_PCT = 224 / 256


@dataclass(frozen=True)
class Preprocessing:
    """How images are turned into model inputs at evaluation time.

    Attributes:
        size: Side of the square input (or the short side in ``native`` mode), pixels.
        mean: Per-channel mean used to normalise RGB values in [0, 1].
        std: Per-channel standard deviation.
        interpolation: Resampling filter name (``bicubic``, ``bilinear``...).
        crop_pct: ``size / resize`` ratio of the ``center-crop`` mode.
        mode: Default preprocessing mode (``center-crop``, ``resize``, ``letterbox``, ``native``).
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = DINO_CROP_PCT
    mode: str = "center-crop"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        _check_keys(cls, data)
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


@dataclass(frozen=True)
class WeightsSource:
    """Where the official pretrained weights of a backbone live.

    Attributes:
        file_name: File name in the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
        url: Official download address.
        hf_repo: Hugging Face repository holding the same weights in timm's layout.
        licence: Licence of the weights.
        obtain: How to get the file when it is not a plain download (the DINOv3 weights come
            through a licence form), or None when ``url`` downloads it.
    """

    file_name: str
    url: str
    hf_repo: str | None = None
    licence: str = "Apache-2.0"
    obtain: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BackboneConfig:
    """Everything needed to build a ViT backbone and feed it images.

    Attributes:
        name: Registered name (``dino_vits16``) or ``timm:<model name>``.
        family: ``dino`` (DINO v1), ``dinov2``, ``dinov3`` (RoPE ViTs, :func:`.backbone.build_eva`),
            ``timm`` or ``test``.
        embed_dim: Token width D.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block.
        patch_size: Side of a square patch, pixels.
        pos_embed_size: Image side the learned positional embedding grid was made for
            (224 for DINO, 518 for DINOv2: 37 x 37 positions); other sizes interpolate.
        mlp_ratio: Hidden width of the MLP over ``embed_dim``.
        mlp: ``mlp`` (GELU MLP) or ``swiglu`` (DINOv2 g/14, DINOv3 S+/H+/7B).
        swiglu_align: DINOv3's SwiGLU hidden width is ``int(2/3 * int(ratio * D))`` rounded up
            to a multiple of this (8, or 64 for 7B); 0 for DINOv2's rule.
        layer_scale: LayerScale initial value (DINOv2), or None.
        reg_tokens: Number of register tokens (DINOv2 ``_reg`` variants; DINOv3's 4 "storage"
            tokens).
        pos_embed_interp: How the positional embedding is resampled to other patch grids, as
            the family's reference does it: ``offset`` (DINO v1, DINOv2 without registers:
            bicubic by the scale (n + 0.1) / M, no antialias) or ``antialias`` (DINOv2 with
            registers, timm: bicubic to the grid, antialiased); see :mod:`.pos_embed`. Unused by
            ``dinov3`` backbones, whose rotary positions (RoPE) need no resampling.
        preprocessing: Evaluation preprocessing that goes with the weights.
        weights: Official weights, or None when there are none.
        timm_name: timm model name for ``timm:`` backbones.
        description: One line for ``dinokit models``.
    """

    name: str
    family: Family
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    pos_embed_size: int = 224
    mlp_ratio: float = 4.0
    mlp: MlpKind = "mlp"
    swiglu_align: int = 0
    layer_scale: float | None = None
    reg_tokens: int = 0
    pos_embed_interp: PosEmbedInterp = "antialias"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    weights: WeightsSource | None = None
    timm_name: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.pos_embed_interp not in POS_EMBED_INTERPS:
            raise ValueError(
                f"unknown pos_embed_interp {self.pos_embed_interp!r} for {self.name}; "
                f"choose one of {', '.join(POS_EMBED_INTERPS)}"
            )

    @property
    def architecture(self) -> str:
        """Short architecture label such as ``ViT-S/16`` or ``ViT-g/14+reg4``."""
        widths = {192: "Ti", 384: "S", 768: "B", 1024: "L", 1280: "H", 1536: "g", 4096: "7B"}
        size = widths.get(self.embed_dim, f"{self.embed_dim}d")
        if self.family == "dinov3" and self.mlp == "swiglu" and size in ("S", "L", "H"):
            size += "+"  # DINOv3's S+/16, L+/16 and H+/16: SwiGLU at the same width
        label = f"ViT-{size}/{self.patch_size}"
        return f"{label}+reg{self.reg_tokens}" if self.reg_tokens else label

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (stored in exported files and checkpoints)."""
        data = dataclasses.asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        data["weights"] = self.weights.to_dict() if self.weights else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        Files written before ``pos_embed_interp`` existed get their family's reference rule
        (:func:`reference_pos_embed_interp`).
        """
        _check_keys(cls, data)
        values = dict(data)
        values.setdefault(
            "pos_embed_interp",
            reference_pos_embed_interp(str(values.get("family")), int(values.get("reg_tokens", 0))),
        )
        values["preprocessing"] = Preprocessing.from_dict(values.get("preprocessing") or {})
        weights = values.get("weights")
        values["weights"] = WeightsSource(**weights) if weights else None
        return cls(**values)

    def with_preprocessing(self, **changes: Any) -> BackboneConfig:
        """A copy with some preprocessing fields replaced."""
        return dataclasses.replace(
            self, preprocessing=dataclasses.replace(self.preprocessing, **changes)
        )


def reference_pos_embed_interp(family: str, reg_tokens: int) -> PosEmbedInterp:
    """The resampling rule of a family's reference code.

    DINO v1 (facebookresearch/dino ``interpolate_pos_encoding``) and the DINOv2 hub models
    without registers (``interpolate_offset=0.1``, ``interpolate_antialias=False``) use
    ``offset``; the DINOv2 hub models with registers (``interpolate_offset=0``,
    ``interpolate_antialias=True``), timm and dinokit's test backbones use ``antialias``.
    """
    if family == "dino" or (family == "dinov2" and reg_tokens == 0):
        return "offset"
    return "antialias"


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(known)}")
