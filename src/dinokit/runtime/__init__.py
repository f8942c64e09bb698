"""Runtime plumbing below everything else: the machine, the device, the precision, the
process group and the number of loader workers (dinov2 keeps the same in
``dinov2/distributed``, imported by both training and evaluation)."""

from .device import resolve_device
from .distributed import (
    ProcessInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    is_initialized,
    world_size,
)
from .machine import cpu_supports_bf16, default_workers, usable_cpus
from .precision import (
    AUTO_PRECISION_ENV,
    PRECISIONS,
    PrecisionName,
    autocast_context,
    autocast_dtype,
    make_grad_scaler,
    resolve_precision,
)
from .sync_batchnorm import SyncBatchNorm1d, convert_sync_batchnorm, has_batchnorms

__all__ = [
    "AUTO_PRECISION_ENV",
    "PRECISIONS",
    "PrecisionName",
    "ProcessInfo",
    "SyncBatchNorm1d",
    "all_gather_objects",
    "all_reduce_mean",
    "autocast_context",
    "autocast_dtype",
    "barrier",
    "cleanup",
    "convert_sync_batchnorm",
    "cpu_supports_bf16",
    "default_workers",
    "has_batchnorms",
    "init_distributed",
    "is_initialized",
    "make_grad_scaler",
    "resolve_device",
    "resolve_precision",
    "usable_cpus",
    "world_size",
]
