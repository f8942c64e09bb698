"""Mixed precision, decided once before training (nanoGPT style: a reusable autocast context
and a gradient scaler that is a no-op unless fp16).

Follows the reference's ``use_fp16`` (facebookresearch/dino ``main_dino.py``: autocast plus a
``GradScaler``), extended with bf16, which needs no scaler. ``auto`` picks bf16 only where the
hardware computes it natively: on a CPU without AVX-512 BF16 / AMX, bf16 matmuls are emulated
and can be hundreds of times slower than fp32. ``DINOKIT_AUTO_PRECISION`` (``bf16``, ``fp16`` or
``fp32``) overrides what ``auto`` picks, so one machine can run everything either way.

Usage::

    precision = resolve_precision(config.precision, device)
    ctx = autocast_context(precision, device)          # reusable: `with ctx:` every step
    scaler = make_grad_scaler(precision, device)       # scale / unscale_ / step / update
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Literal, cast, get_args

import torch

from .machine import cpu_supports_bf16

logger = logging.getLogger(__name__)

PrecisionName = Literal["bf16", "fp16", "fp32"]
PRECISIONS: tuple[str, ...] = (*get_args(PrecisionName), "auto")
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTO_PRECISION_ENV = "DINOKIT_AUTO_PRECISION"
"""Environment variable that, when set, is what ``auto`` resolves to (bf16, fp16 or fp32)."""


def _cuda_bf16_native(device: torch.device) -> bool:
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8


def auto_precision_override() -> PrecisionName | None:
    """The precision ``DINOKIT_AUTO_PRECISION`` makes ``auto`` pick, or None when unset.

    Raises:
        ValueError: the variable holds something other than bf16, fp16 or fp32.
    """
    value = os.environ.get(AUTO_PRECISION_ENV, "").strip().lower()
    if not value:
        return None
    if value not in get_args(PrecisionName):
        raise ValueError(
            f"{AUTO_PRECISION_ENV}={value!r} is not a precision: set it to bf16, fp16 or fp32, "
            "or unset it to let auto choose"
        )
    return cast(PrecisionName, value)


def resolve_precision(requested: str, device: torch.device) -> PrecisionName:
    """The precision to run in on ``device``.

    ``auto``: ``$DINOKIT_AUTO_PRECISION`` when set (then as if requested explicitly); else
    bf16 on CUDA devices with native bf16 (compute capability >= 8, Ampere on), fp16 on older
    CUDA devices, bf16 on CPUs with native bf16 (AVX-512 BF16 or AMX, see
    :func:`~dinokit.runtime.machine.cpu_supports_bf16`), fp32 otherwise (other CPUs, MPS and
    other device types). An explicit choice is kept, with a warning where it will be slow;
    bf16 on a CUDA device without it is an error.

    Args:
        requested: ``auto``, ``bf16``, ``fp16`` or ``fp32``.
        device: The device the model runs on.

    Returns:
        ``bf16``, ``fp16`` or ``fp32``.

    Raises:
        ValueError: an unknown name (also in ``$DINOKIT_AUTO_PRECISION``), or bf16 on a CUDA
            device without it.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    asked = requested
    if requested == "auto" and (forced := auto_precision_override()) is not None:
        requested, asked = forced, f"auto, {AUTO_PRECISION_ENV}={forced}"
    if device.type == "cuda":
        native = _cuda_bf16_native(device)
        if requested == "auto":
            resolved: PrecisionName = "bf16" if native else "fp16"
        elif requested == "bf16" and not native:
            raise ValueError(
                f"{torch.cuda.get_device_name(device)} has no native bf16; use fp16 or auto"
            )
        else:
            resolved = cast(PrecisionName, requested)
    elif device.type == "cpu":
        native = cpu_supports_bf16()
        if requested == "auto":
            resolved = "bf16" if native else "fp32"
        else:
            resolved = cast(PrecisionName, requested)
            if resolved != "fp32" and not native:
                logger.warning(
                    "%s on a CPU without native bf16/fp16 support is emulated and much slower "
                    "than fp32; use --precision auto or fp32",
                    resolved,
                )
    else:
        resolved = "fp32" if requested == "auto" else cast(PrecisionName, requested)
    logger.info("precision: %s (requested %s, device %s)", resolved, asked, device)
    return resolved


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision: bfloat16, float16, or None for fp32."""
    if precision not in PRECISIONS or precision == "auto":
        raise ValueError(f"expected a resolved precision (bf16, fp16, fp32), got {precision!r}")
    return _DTYPES.get(precision)


def autocast_context(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager[object]:
    """A reusable context manager running the forward pass in ``precision``.

    Args:
        precision: A resolved precision (:func:`resolve_precision`).
        device: The training device.

    Returns:
        ``torch.autocast(device.type, dtype)`` for bf16 / fp16, a ``nullcontext`` for fp32.
    """
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 and fp32 need none).

    A disabled scaler is a no-op with the same interface (``scale`` returns its input,
    ``step`` calls ``optimizer.step()``), so the loop never branches on precision. Its
    ``state_dict()`` is checkpointed either way.

    Args:
        precision: A resolved precision (:func:`resolve_precision`).
        device: The training device.
    """
    enabled = autocast_dtype(precision) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=enabled)
