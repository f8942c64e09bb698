"""What this machine offers dinokit: versions, CPU features and count, accelerators.

Also the one rule for how many data-loading workers to start (:func:`default_workers`).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

from .._version import __version__

_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
# oneDNN, which runs PyTorch's bf16 CPU matmuls, can be capped to an older instruction set
# (``ONEDNN_MAX_CPU_ISA``, formerly ``DNNL_MAX_CPU_ISA``); below AVX512_CORE_BF16 it emulates
# bf16 (hundreds of times slower) even on a CPU that has it. Caps that keep native bf16:
_ONEDNN_ISA_ENVS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
_ONEDNN_BF16_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL")


def _installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (``taskset``, container CPU sets)
    where the platform has one, else every CPU."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(*, cap: int) -> int:
    """How many data-loading workers (processes or threads) to start by default.

    One usable CPU is left to the process that runs the model; never fewer than 1, never
    more than ``cap`` (past a few workers, decoding stops being the bottleneck and each
    worker process costs memory).

    Args:
        cap: The most workers this caller wants.
    """
    return max(1, min(cap, usable_cpus() - 1))


T = TypeVar("T")
R = TypeVar("R")


def threaded_map(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None, cap: int = 8
) -> Iterator[R]:
    """``fn`` of each item, in order, computed by a pool of threads.

    For image decoding and resizing: PIL releases the GIL there, so threads scale. At most
    ``4 * workers`` results are held at any time, so memory stays bounded for long inputs.

    Args:
        fn: The work for one item.
        items: The inputs.
        workers: Threads (default: :func:`default_workers` with ``cap``).
        cap: The most threads the default starts.
    """
    count = workers or default_workers(cap=cap)
    window: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=count) as pool:
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= 4 * count:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of ``/proc/cpuinfo`` (Linux), else None."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None)


def cpu_flags() -> list[str]:
    """The CPU's SIMD features that matter for speed (from ``/proc/cpuinfo`` on Linux)."""
    present = set((_cpuinfo("flags") or "").split())
    return [f for f in _CPU_FLAGS if f in present]


def cpu_model() -> str:
    """The CPU model name, or the platform's processor string."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN is capped to (``ONEDNN_MAX_CPU_ISA``), or None."""
    for name in _ONEDNN_ISA_ENVS:
        value = os.environ.get(name, "").strip().upper()
        if value and value != "DEFAULT":
            return value
    return None


def cpu_supports_bf16() -> bool:
    """Whether PyTorch computes bf16 natively on this CPU (AVX-512 BF16 or AMX, not capped
    below them by ``ONEDNN_MAX_CPU_ISA``)."""
    flags = set(cpu_flags())
    cap = onednn_isa_cap()
    if cap is not None and not cap.startswith(_ONEDNN_BF16_CAPS):
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cuda_devices() -> list[dict[str, Any]]:
    """Name, memory, compute capability and bf16 support of each CUDA device."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append(
            {
                "index": i,
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
                "bf16": props.major >= 8,
            }
        )
    return devices


def environment_report() -> dict[str, Any]:
    """The machine part of what ``dinokit env`` prints, as a JSON-serialisable dict."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dinokit": __version__,
        "torch": torch.__version__,
        "torchvision": _installed_version("torchvision"),
        "timm": _installed_version("timm"),
        "numpy": _installed_version("numpy"),
        "safetensors": _installed_version("safetensors"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": cpu_flags(),
        "cpu_bf16": cpu_supports_bf16(),
        "onednn_isa_cap": onednn_isa_cap(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cuda_devices": cuda_devices(),
    }
