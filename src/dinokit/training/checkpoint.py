"""Training checkpoints: atomic writes, weights-only reads, and RNG state.

The write is the classic atomic-replace pattern (temp file in the same folder, flush, fsync,
``os.replace``, fsync of the folder), so a run killed at any moment leaves either the old or
the new checkpoint, never a partial one. facebookresearch/dino's ``save_on_master`` writes in
place and can leave a truncated ``checkpoint.pth``; this fixes that.

Reads go through :func:`dinokit.models.weights.files.safe_torch_load` (``weights_only=True``),
so a checkpoint may contain only tensors, ``None``/``bool``/``int``/``float``/``str``, and
dicts, lists and tuples of them: optimizer, ``GradScaler`` and module state dicts all qualify.
:func:`save_checkpoint` checks this before writing, so a checkpoint that could not be resumed
is never written. RNG states are stored in that vocabulary by :func:`capture_rng_state`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._files import atomic_path
from ..models.weights.files import safe_torch_load

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoints/last.pt"
"""A run's latest checkpoint, in its folder (``--resume`` continues from it)."""
_PRIMITIVES = (type(None), bool, int, float, str)
_LEAVES = (Tensor, *_PRIMITIVES)


def _check_loadable(value: Any, where: str) -> None:
    """Raise TypeError naming the first value a weights-only load would refuse."""
    if isinstance(value, _LEAVES):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, _PRIMITIVES):
                raise TypeError(f"checkpoint key {where}[{key!r}] has type {type(key).__name__}")
            _check_loadable(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_loadable(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint value {where} has type {type(value).__name__}; only tensors, None, bool, "
        "int, float, str, and dicts/lists/tuples of them can be loaded with weights_only=True"
    )


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (the old file stays intact on any failure).

    Args:
        path: Destination file; its folder is created when missing.
        state: Tensors, primitives, and dicts/lists/tuples of them (see the module docstring).

    Raises:
        TypeError: ``state`` holds a value that ``load_checkpoint`` could not read back.
    """
    path = Path(path)
    _check_loadable(state, "state")
    with atomic_path(path, durable=True) as tmp:
        torch.save(dict(state), tmp)
    logger.debug("checkpoint written: %s", path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable torch file or does not hold a dict.
        dinokit.models.weights.files.UnsafeCheckpointError: it holds code-importing pickles.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = safe_torch_load(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, found {type(state).__name__}")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Every random generator a training run draws from, in a weights-only loadable form.

    Returns:
        ``python``: ``random.getstate()`` as ``{"version", "state": list[int], "gauss_next"}``;
        ``numpy``: the legacy global generator (``np.random.get_state()``, which data
        augmentation libraries use) with its ``(624,)`` uint32 key as an int64 tensor;
        ``torch``: the CPU generator (uint8 tensor); ``cuda``: the current CUDA device's
        generator, only when CUDA is available. Under DDP each rank has its own states;
        this captures the calling process's.
    """
    version, py_state, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned; later draws repeat the captured ones.

    A ``cuda`` entry is ignored (with a log line) when CUDA is not available, so a GPU
    checkpoint still resumes on a CPU.
    """
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["bit_generator"],
            npy["key"].numpy().astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
        else:
            logger.info("checkpoint has a CUDA RNG state but CUDA is not available: skipped")
