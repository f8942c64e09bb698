"""What this machine offers dinokit: versions, CPU features, accelerators, cache folders."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import torch

from .models.weights.hub import OFFLINE_ENV, hf_cache_dir, torch_hub_checkpoint_dir

_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_flags() -> list[str]:
    """The CPU's SIMD features that matter for speed (from ``/proc/cpuinfo`` on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [f for f in _CPU_FLAGS if f in present]
    return []


def cpu_model() -> str:
    """The CPU model name, or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_supports_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX)."""
    flags = set(cpu_flags())
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
    """Everything ``dinokit env`` prints, as a JSON-serialisable dict."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dinokit": _version("dinokit"),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "numpy": _version("numpy"),
        "safetensors": _version("safetensors"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": cpu_flags(),
        "cpu_bf16": cpu_supports_bf16(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cuda_devices": cuda_devices(),
        "weights_search_path": [str(torch_hub_checkpoint_dir()), str(hf_cache_dir())],
        "offline": os.environ.get(OFFLINE_ENV, "") not in ("", "0"),
    }
