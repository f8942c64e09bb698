"""Exporting a backbone: dinokit's self-describing file, the timm/official DINO layout, ONNX.

dinokit's own file is one ``.safetensors`` per backbone whose JSON header entry ``dinokit``
holds the format version, the backbone config, its preprocessing, the branch and the
provenance (base weights, run folder, epochs, date), so :func:`dinokit.load` rebuilds the
model offline with no user code. The tensors use timm's ``VisionTransformer`` keys, which are
the official DINO v1 keys (facebookresearch/dino ``vision_transformer.py``).

The ``timm`` format writes the same tensors without dinokit's header, as a plain
``.safetensors`` or a ``torch.save`` state dict (``.pth``/``.pt``/``.bin``), so that
``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...))`` or
``VisionTransformer.load_state_dict`` reads it. ONNX lives in :mod:`.onnx_export`, the
Hugging Face ``transformers`` folder in :mod:`.hf_format`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write
from .backbone import Backbone
from .config import BackboneConfig
from .dinov3 import PERIODS_KEY, rope_periods
from .factory import open_model
from .weights.files import BRANCHES, DINOKIT_METADATA_KEY, WeightsFile

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
EXPORT_FORMATS: tuple[str, ...] = ("dinokit", "timm", "onnx", "transformers")
"""Formats :func:`export` writes."""
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def backbone_metadata(
    backbone: Backbone, *, branch: str | None = None, provenance: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The self-description stored with a backbone's weights.

    Returns:
        ``format_version``, ``backbone`` (the config), ``preprocessing`` (size, mean, std,
        interpolation, crop_pct, mode), ``branch`` and ``provenance`` (``source``,
        ``created`` as an ISO 8601 UTC date, and the given facts such as ``base_weights``,
        ``run`` and ``epochs``).
    """
    return {
        "format_version": FORMAT_VERSION,
        "backbone": backbone.config.to_dict(),
        "preprocessing": backbone.config.preprocessing.to_dict(),
        "branch": branch,
        "provenance": {
            "source": backbone.source,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(provenance or {}),
        },
    }


def _vit_tensors(backbone: Backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in backbone.vit.state_dict().items()}


def _timm_tensors(backbone: Backbone) -> dict[str, torch.Tensor]:
    """The state dict timm's own model has: DINOv3's RoPE periods are no part of it."""
    tensors = _vit_tensors(backbone)
    periods = tensors.pop(PERIODS_KEY, None)
    if periods is not None:
        formula = rope_periods(backbone.embed_dim // backbone.config.num_heads)
        if not torch.equal(periods, formula):
            logger.warning(
                "timm computes the RoPE periods itself; this model's differ from that formula "
                "by up to %.2g (the reference loads them from its file), so timm's outputs "
                "will differ slightly from dinokit's; --format dinokit keeps them",
                float((periods - formula).abs().max()),
            )
    return tensors


def save_backbone(
    backbone: Backbone,
    path: str | Path,
    *,
    branch: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a backbone as a dinokit ``.safetensors`` file, atomically (replacing ``path``).

    Args:
        backbone: The model; only its ViT weights are stored (official DINO/timm keys).
        path: Destination ``.safetensors`` file.
        branch: ``teacher`` or ``student`` when it comes from a training run.
        provenance: Extra facts (base weights, run folder, epochs...).
    """
    from safetensors.torch import save_file

    tensors = _vit_tensors(backbone)
    header = {
        DINOKIT_METADATA_KEY: json.dumps(
            backbone_metadata(backbone, branch=branch, provenance=provenance)
        )
    }
    return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=header))


def timm_model_name(config: BackboneConfig) -> str | None:
    """The timm model name with this architecture and preprocessing, if timm has one.

    ``dino_vits16`` -> ``vit_small_patch16_224.dino``; ``timm:<name>`` -> ``<name>``;
    ``dinov3_vits16`` -> ``vit_small_patch16_dinov3_qkvb`` (dinokit keeps the q/v biases of
    the official files; timm's ``_qkvb`` models have them, the 7B needs ``qkv_bias=True``).
    """
    if config.family == "dinov3" and config.timm_name is not None:
        import timm

        qkvb = f"{config.timm_name}_qkvb"
        return qkvb if timm.is_model(qkvb) else config.timm_name
    if config.timm_name is not None:
        return config.timm_name
    if config.weights is not None and (config.weights.hf_repo or "").startswith("timm/"):
        return (config.weights.hf_repo or "")[len("timm/") :]
    return None


def save_timm(backbone: Backbone, path: str | Path) -> Path:
    """Write the bare timm / official DINO state dict, atomically (replacing ``path``).

    ``.safetensors`` gives a safetensors file (``{"format": "pt"}`` header, as Hugging Face
    writes); ``.pth``, ``.pt`` or ``.bin`` give a ``torch.save`` dict of tensors, as the
    official DINO releases are.

    Raises:
        ValueError: another file extension.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = _timm_tensors(backbone)
    if path.suffix == ".safetensors":
        return atomic_write(
            path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"})
        )
    if path.suffix in _TORCH_SUFFIXES:
        return atomic_write(path, lambda tmp: torch.save(tensors, tmp))
    raise ValueError(
        f"{path}: the timm format is written as .safetensors, .pth, .pt or .bin; "
        "change the file extension"
    )


_SUFFIXES = {
    "dinokit": (".safetensors",),
    "timm": (".safetensors", *_TORCH_SUFFIXES),
    "onnx": (".onnx",),
}


def _check_suffix(out: Path, format: str) -> None:
    if format == "transformers":  # a folder
        if any(out.suffix in suffixes for suffixes in _SUFFIXES.values()):
            raise ValueError(
                f"{out}: the transformers format is a folder (config.json, model.safetensors); "
                "give a folder name"
            )
        return
    allowed = _SUFFIXES[format]
    if out.suffix not in allowed:
        raise ValueError(
            f"{out}: the {format} format is written as {' or '.join(allowed)}; "
            "change the file extension"
        )


def export(
    model: str | Path,
    out: str | Path,
    *,
    format: str = "dinokit",
    branch: str | None = None,
    weights: str | Path | None = None,
    overwrite: bool = False,
    size: int | None = None,
) -> Path:
    """Export a model to a file other tools (or dinokit, offline) load.

    Args:
        model: Anything :func:`dinokit.load` accepts: a registered name, a run folder, an
            exported file or a weights file of a known layout.
        out: Destination file (a folder for ``transformers``).
        format: ``dinokit`` (self-describing ``.safetensors``), ``timm`` (bare timm /
            official DINO state dict: ``.safetensors``, ``.pth``, ``.pt`` or ``.bin``) or
            ``onnx`` (inputs ``images`` (B, 3, S, S), outputs ``cls`` (B, D) and
            ``patch_tokens`` (B, N, D), dynamic batch axis; checked against PyTorch when
            onnxruntime is installed) or ``transformers`` (a folder that
            ``transformers.AutoModel.from_pretrained`` loads: ``ViTModel`` for DINO v1,
            ``Dinov2Model``, ``Dinov2WithRegistersModel`` with registers).
        branch: ``teacher`` or ``student`` for run folders and checkpoints holding both
            (default teacher). With a file holding one branch, it must match.
        weights: With a registered name: as in :func:`dinokit.create_backbone`.
        overwrite: Replace ``out`` if it exists.
        size: ONNX input side in pixels (default: the model's preprocessing size).

    Returns:
        The written file.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is off.
        ValueError: unknown format or branch, or a branch the file does not hold.
    """
    out = _check_destination(out, format=format, branch=branch, size=size, overwrite=overwrite)
    source = _open_source(model, weights=weights, branch=branch)
    _WRITERS[format](source, out, size)
    logger.info("exported %s (%s format) to %s", source.backbone.config.name, format, out)
    return out


@dataclass(frozen=True)
class _Source:
    """The model to export, opened.

    Attributes:
        backbone: The model, in eval mode.
        weights_file: The file it was read from (None for a registered name built without
            weights).
        branch: The branch the file holds, else the one asked for (None when neither).
    """

    backbone: Backbone
    weights_file: WeightsFile | None
    branch: str | None

    def provenance(self) -> dict[str, Any]:
        """Where the model came from, carried over from the file it was read from."""
        weights_file = self.weights_file
        if weights_file is None:
            return {"base_weights": self.backbone.source}
        meta = weights_file.metadata
        path = str(weights_file.path.resolve())
        if weights_file.layout == "dinokit-export":
            earlier = meta.get("provenance")
            facts = dict(earlier) if isinstance(earlier, dict) else {}
            facts.pop("source", None)
            facts.pop("created", None)
            return {**facts, "exported_from": path}
        if weights_file.layout == "dinokit-checkpoint":
            return {
                "base_weights": meta.get("base_weights"),
                "run": str(weights_file.path.resolve().parent.parent),
                "exported_from": path,
            }
        read: dict[str, Any] = {"base_weights": path}
        if meta.get("epoch") is not None:
            read["epochs"] = meta["epoch"]
        return read


def _check_destination(
    out: str | Path, *, format: str, branch: str | None, size: int | None, overwrite: bool
) -> Path:
    """The destination path, once the format, branch, size and destination are known good."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {EXPORT_FORMATS}")
    if branch is not None and branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    if size is not None and format != "onnx":
        raise ValueError("size only applies to the onnx format (the others keep any size)")
    out = Path(out).expanduser()
    _check_suffix(out, format)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite (overwrite=True) to replace it")
    if out.is_dir() and format != "transformers":
        raise IsADirectoryError(f"{out} is a folder: give a file name for the export")
    if out.is_file() and format == "transformers":
        raise FileExistsError(f"{out} is a file: the transformers format writes a folder")
    return out


def _open_source(model: str | Path, *, weights: str | Path | None, branch: str | None) -> _Source:
    """Open the model; a file holding the other branch than ``branch`` is refused."""
    opened = open_model(model, weights=weights, branch=branch or "teacher")
    backbone, weights_file = opened.backbone.eval(), opened.weights_file
    held = weights_file.branch if weights_file is not None else None
    if branch is not None and held is not None and held != branch:
        raise ValueError(
            f"{weights_file.path if weights_file else model} holds the {held} branch only; "
            f"pick the {branch} file (or the run folder) instead"
        )
    return _Source(backbone, weights_file, held or branch)


def _write_dinokit(source: _Source, out: Path, size: int | None) -> None:
    save_backbone(source.backbone, out, branch=source.branch, provenance=source.provenance())


def _write_timm(source: _Source, out: Path, size: int | None) -> None:
    """The bare state dict, and how timm loads it (logged)."""
    config = source.backbone.config
    save_timm(source.backbone, out)
    name = timm_model_name(config)
    if name is not None and config.family == "dinov3":
        logger.info(
            "load it with timm.create_model(%r, pretrained=True, "
            "pretrained_cfg_overlay=dict(file=%r), global_pool='token'%s)",
            name,
            str(out),
            "" if name.endswith("_qkvb") else ", qkv_bias=True",
        )
    elif name is not None:
        logger.info(
            "load it with timm.create_model(%r, pretrained=True, "
            "pretrained_cfg_overlay=dict(file=%r)); add dynamic_img_size=True for "
            "inputs other than %d px",
            name,
            str(out),
            config.pos_embed_size,
        )


def _write_transformers(source: _Source, out: Path, size: int | None) -> None:
    """The ``transformers`` folder, and how transformers loads it (logged)."""
    from .hf_format import hf_model_type, save_transformers

    metadata = backbone_metadata(
        source.backbone, branch=source.branch, provenance=source.provenance()
    )
    save_transformers(source.backbone, out, metadata=metadata)
    vit = hf_model_type(source.backbone.config) == "vit"  # its default pooler is no part of DINO
    logger.info(
        "load it with transformers.AutoModel.from_pretrained(%r%s)",
        str(out),
        ", add_pooling_layer=False" if vit else "",
    )


def _write_onnx(source: _Source, out: Path, size: int | None) -> None:
    from .onnx_export import export_onnx

    export_onnx(source.backbone, out, size=size)


_WRITERS: dict[str, Callable[[_Source, Path, int | None], None]] = {
    "dinokit": _write_dinokit,
    "timm": _write_timm,
    "onnx": _write_onnx,
    "transformers": _write_transformers,
}
"""The writer of each of :data:`EXPORT_FORMATS`."""
