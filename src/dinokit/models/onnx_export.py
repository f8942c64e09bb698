"""ONNX export of a backbone, checked against PyTorch with onnxruntime.

The graph takes normalised images ``images`` (B, 3, S, S) and returns ``cls`` (B, D) and
``patch_tokens`` (B, N, D), both after the final norm, with a dynamic batch axis ``batch``.
dinokit's metadata (config, preprocessing) is stored in the model's ``metadata_props`` under
``dinokit`` so the preprocessing travels with the file. Uses PyTorch's ``torch.export``-based
exporter (which needs ``onnx`` and ``onnxscript``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .backbone import Backbone
from .weights.files import DINOKIT_METADATA_KEY

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("cls", "patch_tokens")
_INSTALL_HINT = "pip install 'dinokit[onnx]' (onnx, onnxscript, onnxruntime)"
# Tokens agree to about 1e-6 in float32; fused kernels of other CPUs stay far below this.
_ATOL = 1e-3
_CHECK_BATCH = 3  # differs from the export batch, so the check exercises the dynamic axis
# The exporter's graph passes log every step at INFO (hundreds of lines for a ViT).
_CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and how it compared with PyTorch.

    Attributes:
        path: The ``.onnx`` file.
        input_size: (H, W) of the input images.
        max_abs_diff: Largest absolute difference between onnxruntime and PyTorch outputs
            over a random batch, or None when onnxruntime is not installed.
    """

    path: Path
    input_size: tuple[int, int]
    max_abs_diff: float | None


class _Tokens(nn.Module):
    """The backbone as a graph with two named outputs (a tuple: ONNX has no dataclasses)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone.forward_features(images)
        return features.cls, features.patch_tokens


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's own loggers at WARNING for the duration (unless debugging)."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    if not logger.isEnabledFor(logging.DEBUG):
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _require_exporter() -> None:
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            raise RuntimeError(f"ONNX export needs the {module} package: {_INSTALL_HINT}") from None


def export_onnx(
    backbone: Backbone,
    path: str | Path,
    *,
    size: int | None = None,
    verify: bool = True,
    seed: int = 0,
) -> OnnxExport:
    """Write a backbone as ONNX (atomically) and check it against PyTorch.

    Args:
        backbone: The model (exported on the CPU in float32).
        path: Destination ``.onnx`` file; models over 2 GB also get ``<name>.data``.
        size: Input side S in pixels, a multiple of the patch size (default: the
            preprocessing size).
        verify: Run the file with onnxruntime on a random batch and compare with PyTorch
            (skipped with a warning when onnxruntime is not installed).
        seed: Seed of the random inputs of the export and the check.

    Returns:
        The file, the input size and the largest absolute difference found.

    Raises:
        RuntimeError: onnx/onnxscript missing, or onnxruntime's outputs differ from
            PyTorch's (nothing is written then).
        ValueError: ``size`` is not a multiple of the patch size, or ``path`` is not ``.onnx``.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: ONNX exports are .onnx files; rename it")
    side = size or backbone.config.preprocessing.size
    if side % backbone.patch_size:
        raise ValueError(
            f"ONNX input size {side} is not a multiple of the patch size "
            f"{backbone.patch_size}; pick a multiple such as "
            f"{side // backbone.patch_size * backbone.patch_size or backbone.patch_size}"
        )
    _require_exporter()
    module = _Tokens(backbone).cpu().float().eval()
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(2, 3, side, side, generator=gen)
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    if program is None:  # only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program; update PyTorch")
    meta = {
        "format_version": 1,
        "backbone": backbone.config.to_dict(),
        "preprocessing": backbone.config.preprocessing.to_dict(),
        "input_size": [side, side],
        "inputs": [INPUT_NAME],
        "outputs": list(OUTPUT_NAMES),
    }
    program.model.metadata_props[DINOKIT_METADATA_KEY] = json.dumps(meta)

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        staged = staging / path.name  # the same name: external data files refer to it
        program.save(str(staged))
        diff = None
        if verify:
            check = torch.randn(_CHECK_BATCH, 3, side, side, generator=gen)
            diff = _compare_with_torch(staged, module, check, shown=path)
        for item in sorted(staging.iterdir(), key=lambda p: p == staged):  # model file last
            os.chmod(item, 0o644)
            os.replace(item, path.parent / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OnnxExport(path, (side, side), diff)


def _compare_with_torch(
    onnx_file: Path, module: nn.Module, images: Tensor, *, shown: Path
) -> float | None:
    """Largest |onnxruntime - PyTorch| over both outputs, or None without onnxruntime.

    Raises:
        RuntimeError: the difference exceeds the tolerance.
    """
    try:
        import onnxruntime
    except ImportError:
        logger.warning("onnxruntime is not installed: %s was not checked; %s", shown, _INSTALL_HINT)
        return None
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})
    with torch.inference_mode():
        want = module(images)
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
    batch = images.shape[0]
    if not np.isfinite(diff) or diff > _ATOL:
        raise RuntimeError(
            f"ONNX check failed: onnxruntime and PyTorch outputs differ by up to {diff:.3g} "
            f"(tolerance {_ATOL:g}) on a batch of {batch}; nothing was written"
        )
    logger.info(
        "ONNX check: max |onnxruntime - PyTorch| = %.3g over a batch of %d (%s outputs)",
        diff,
        batch,
        "/".join(OUTPUT_NAMES),
    )
    return diff
