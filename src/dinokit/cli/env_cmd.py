"""``dinokit env``: versions, CPU features, CUDA devices, the precision ``auto`` picks and the
weight caches searched."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser("env", help="describe this machine and the caches searched")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the environment report."""
    from ..runtime.machine import environment_report

    report = environment_report() | _weight_caches() | _auto_precision()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(len(key) for key in report)
    for key, value in report.items():
        if isinstance(value, list):
            value = (
                ", ".join(
                    " ".join(f"{k}={v}" for k, v in item.items())
                    if isinstance(item, dict)
                    else item
                    for item in value
                )
                or "none"
            )
        print(f"{key.ljust(width)}  {value}")
    return 0


def _weight_caches() -> dict[str, Any]:
    """Where model weights are looked for, and whether downloads are turned off."""
    from ..models.weights.hub import OFFLINE_ENV, hf_cache_dir, torch_hub_checkpoint_dir

    return {
        "weights_search_path": [str(torch_hub_checkpoint_dir()), str(hf_cache_dir())],
        "offline": os.environ.get(OFFLINE_ENV, "") not in ("", "0"),
    }


def _auto_precision() -> dict[str, Any]:
    """What ``--precision auto`` resolves to on each device, and the override in force."""
    import torch

    from ..runtime.precision import AUTO_PRECISION_ENV, resolve_precision

    devices = [torch.device("cpu")]
    devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return {
        "auto_precision": [f"{device}={resolve_precision('auto', device)}" for device in devices],
        "auto_precision_override": os.environ.get(AUTO_PRECISION_ENV) or None,
    }
