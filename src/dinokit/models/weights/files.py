"""Reading weight files safely and recognising their layout.

Layouts read (auto-detected):

* official DINO v1 backbone ``.pth`` (bare ViT keys, facebookresearch/dino);
* official DINO v1 full checkpoint (``student``/``teacher`` with ``module.``/``backbone.``/
  ``head.`` prefixes, legacy weight-norm head keys, ``dino_loss.center``, ``args``);
* official DINOv2 hub ``.pth`` (``mask_token``, LayerScale, registers, SwiGLU);
* official DINOv3 hub ``.pth`` (``storage_tokens``, ``rope_embed.periods``, masked key bias);
* timm / Hugging Face ``model.safetensors`` or ``pytorch_model.bin``;
* Hugging Face ``transformers`` ``Dinov2Model`` / ``Dinov2WithRegistersModel`` / ``ViTModel`` /
  ``DINOv3ViTModel`` folders (``config.json`` + weights), also by repository id
  (``hf:facebook/dinov2-small``);
* dinokit exports (``.safetensors`` with dinokit metadata) and training checkpoints.

``torch.load`` always runs with ``weights_only=True``: a pickle that would import code is
refused, never executed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .convert import StateDict, clean_state_dict, split_backbone_head
from .hf_layout import CONFIG_FILE, HFFolder, hf_to_official, is_hf_layout, open_hf_folder
from .hub import HF_PREFIX, resolve_hf_repo

logger = logging.getLogger(__name__)

DINOKIT_METADATA_KEY = "dinokit"
BRANCHES = ("teacher", "student")


class UnsafeCheckpointError(ValueError):
    """A pickle that needs code outside the weights-only allow-list to load."""


@dataclass
class WeightsFile:
    """The parts of a weights file dinokit uses.

    Attributes:
        path: The file.
        layout: ``dino-backbone``, ``dino-full-checkpoint``, ``dinov2``, ``dinov3``, ``timm``,
            ``transformers``, ``dinokit-export`` or ``dinokit-checkpoint``.
        backbone: Backbone state dict (wrapper prefixes removed, DINOv2 keys as in the file;
            transformers keys already mapped to the official ones).
        head: DINO projection-head state dict (reference key names), empty when absent.
        center: (1, K) DINO loss centre, when the file has one.
        branch: ``teacher`` or ``student`` for files that hold both, else None.
        metadata: Extra information (dinokit header, the reference ``args``, ``epoch``; for
            transformers files ``transformers``: its ``config``, ``preprocessor`` and ``label``).
    """

    path: Path
    layout: str
    backbone: StateDict
    head: StateDict = field(default_factory=dict)
    center: Tensor | None = None
    branch: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _allowed_globals() -> list[Any]:
    # argparse.Namespace: the ``args`` entry of official DINO checkpoints. NumPy scalars and
    # their dtypes: the reference writes numpy float64 learning rates into optimizer param
    # groups. These only build data; none can run code.
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # NumPy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    scalar = multiarray.scalar
    allowed: list[Any] = [
        argparse.Namespace,
        np.dtype,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
    ]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        allowed.append((getattr(np.dtypes, name), f"numpy.dtypes.{name}"))
    return allowed


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True`` and a small allow-list, on the CPU.

    Raises:
        UnsafeCheckpointError: unpickling would need other code (named in the message).
        ValueError: the file is not a readable torch file.
    """
    path = Path(path)
    if not _looks_like_torch_file(path):
        raise ValueError(
            f"{path}: not a PyTorch weights file (neither a torch.save zip archive nor a "
            "pickle); is it complete, and is it the right file?"
        )
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch wraps the unpickler's own message (which names the refused global) in a
        # long generic text; report the inner one.
        inner = exc.__context__ if exc.__context__ is not None else exc
        reason = " ".join(str(inner).split()) or type(inner).__name__
        raise UnsafeCheckpointError(
            f"{path}: refused to load: unpickling it would run code outside the weights-only "
            f"allow-list ({reason}). Re-save only the tensors (torch.save(model.state_dict()))"
            " or convert the file to .safetensors"
        ) from None
    except Exception as exc:  # corrupt archives and pickles fail with many exception types
        raise ValueError(
            f"{path}: not a readable PyTorch weights file ({type(exc).__name__}: {exc}); "
            "is it complete?"
        ) from None


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (``torch.save`` since 1.6) or a protocol >= 2 pickle (legacy format)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as handle:
        return handle.read(1) == b"\x80"


def _to_plain(value: Any) -> Any:
    """JSON-friendly copy of checkpoint metadata (Namespace -> dict, numbers -> float)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _read_safetensors(path: Path) -> WeightsFile:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError (not a ValueError)
        raise ValueError(
            f"{path}: not a readable safetensors file ({exc}); is it complete?"
        ) from None
    if DINOKIT_METADATA_KEY in header:
        meta = json.loads(header[DINOKIT_METADATA_KEY])
        return WeightsFile(
            path, "dinokit-export", tensors, branch=meta.get("branch"), metadata=meta
        )
    return WeightsFile(path, "timm", clean_state_dict(tensors))


def _pick_branch(obj: dict[str, Any], branch: str, path: Path) -> StateDict:
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    value = obj.get(branch)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: this checkpoint has no {branch!r} weights")
    return value


def _read_full_checkpoint(obj: dict[str, Any], path: Path, branch: str) -> WeightsFile:
    backbone, head = split_backbone_head(_pick_branch(obj, branch, path))
    loss_state = obj.get("dino_loss")
    center = loss_state.get("center") if isinstance(loss_state, dict) else None
    meta = {"epoch": _to_plain(obj.get("epoch")), "args": _to_plain(obj.get("args"))}
    return WeightsFile(
        path, "dino-full-checkpoint", backbone, head, center, branch=branch, metadata=meta
    )


def _read_dinokit_checkpoint(obj: dict[str, Any], path: Path, branch: str) -> WeightsFile:
    part = _pick_branch(obj, branch, path)
    loss_state = obj.get("loss")
    center = loss_state.get("center") if isinstance(loss_state, dict) else None
    return WeightsFile(
        path,
        "dinokit-checkpoint",
        dict(part["backbone"]),
        dict(part.get("head", {})),
        center,
        branch=branch,
        metadata=dict(obj.get(DINOKIT_METADATA_KEY, {})),
    )


def read_weights(path: str | Path, *, branch: str = "teacher") -> WeightsFile:
    """Read any supported weights file.

    Args:
        path: The file (``.pth``, ``.pt``, ``.bin``, ``.ckpt`` or ``.safetensors``).
        branch: For files holding a teacher and a student: which one (DINO's authors
            recommend the teacher).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: a pickle that would run code.
        ValueError: an unrecognised layout.
    """
    if str(path).startswith(HF_PREFIX):
        folder = resolve_hf_repo(str(path))
        return _read_hf_folder(open_hf_folder(folder, label=str(path)))
    path = Path(path).expanduser()
    if is_hf_folder(path):
        return _read_hf_folder(open_hf_folder(path))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        return _maybe_hf(_read_safetensors(path))
    obj = safe_torch_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if DINOKIT_METADATA_KEY in obj and "teacher" in obj:
        return _read_dinokit_checkpoint(obj, path, branch)
    if "teacher" in obj or "student" in obj:
        return _read_full_checkpoint(obj, path, branch)
    for wrapper_key in ("state_dict", "model"):
        if isinstance(obj.get(wrapper_key), dict):
            obj = obj[wrapper_key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{path}: holds no tensors: not a weights file dinokit knows")
    if len(tensors) != len(obj):
        others = sorted(k for k in obj if k not in tensors)
        raise ValueError(f"{path}: unexpected non-tensor entries {others[:10]}")
    backbone, head = split_backbone_head(tensors)
    dinov2_keys = ("mask_token", "register_tokens")
    layout = "dinov2" if any(k in backbone for k in dinov2_keys) else "dino-backbone"
    if "storage_tokens" in backbone:
        layout = "dinov3"
    if path.name in ("pytorch_model.bin",):
        layout = "timm"
    return _maybe_hf(WeightsFile(path, layout, backbone, head))


def is_hf_folder(path: Path) -> bool:
    """A folder with a transformers ``config.json`` (a run folder has ``config.yaml``)."""
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def _read_hf_folder(hf: HFFolder) -> WeightsFile:
    read = read_weights(hf.weights)
    if read.layout != "transformers":
        raise ValueError(
            f"{hf.weights}: not transformers' ViT / DINOv2 keys, although {hf.folder} has a "
            f"{CONFIG_FILE}; pass the weights file itself"
        )
    read.metadata["transformers"] = {
        "config": hf.config,
        "preprocessor": hf.preprocessor,
        "label": hf.label,
    }
    return read


def _maybe_hf(read: WeightsFile) -> WeightsFile:
    """A plain state dict in transformers' key layout, mapped to the official keys."""
    if read.layout == "dinokit-export" or not is_hf_layout(read.backbone):
        return read
    backbone = hf_to_official(read.backbone, source=str(read.path))
    metadata = dict(read.metadata)
    config_path = read.path.parent / CONFIG_FILE
    if config_path.is_file():
        try:
            hf = open_hf_folder(read.path.parent)
            metadata["transformers"] = {
                "config": hf.config,
                "preprocessor": hf.preprocessor,
                "label": str(read.path.parent),
            }
        except (OSError, ValueError) as exc:
            logger.info("%s: not used (%s)", config_path, exc)
    return WeightsFile(read.path, "transformers", backbone, read.head, metadata=metadata)
