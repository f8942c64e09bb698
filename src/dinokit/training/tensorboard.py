"""TensorBoard event files of a run: the scalars of ``metrics.jsonl``, step by step.

Each ``kind: step`` record becomes ``train/<name>`` scalars and each ``kind: knn`` record
``knn/<name>`` scalars (``knn/knn_top1`` is the kNN curve), at the record's global step, in
event files written to the run folder itself (``tensorboard --logdir runs/`` shows one run per
folder). Needs the ``tensorboard`` package (``pip install 'dinokit[tensorboard]'``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'dinokit[tensorboard]'"
_GROUPS = {"step": "train", "knn": "knn", "label_free": "label_free"}
_NOT_SCALARS = ("kind", "step")


def check_tensorboard() -> None:
    """Fail before a run starts when TensorBoard is not installed.

    Raises:
        RuntimeError: the ``tensorboard`` package is missing (the message says how to add it).
    """
    if importlib.util.find_spec("tensorboard") is None:
        raise RuntimeError(f"--logger tensorboard needs the tensorboard package: {INSTALL_HINT}")


class TensorBoardLog:
    """Writes metric records as TensorBoard scalars.

    Args:
        folder: Where the event files go (the run folder).
        resume_step: Global step of the checkpoint a resumed run restarts from: events logged
            after it by the interrupted run are dropped, as ``metrics.jsonl`` drops them.
    """

    def __init__(self, folder: Path, *, resume_step: int | None = None) -> None:
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self._writer: Any = SummaryWriter(log_dir=str(folder), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        """Add every finite number of one record (``kind`` step, knn or label_free) and flush."""
        group = _GROUPS.get(str(record.get("kind")))
        if group is None or "step" not in record:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key in _NOT_SCALARS or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                self._writer.add_scalar(f"{group}/{key}", float(value), global_step=step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
