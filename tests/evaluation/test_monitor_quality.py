"""The training kNN monitor also records the label-free quality score."""

from __future__ import annotations

import torch

from dinokit.training.monitor import KnnMonitor
from tests.data._helpers import write_jpeg


def test_monitor_records_effective_rank_and_uniformity(tmp_path, vit_test) -> None:
    for split, count in (("train", 3), ("val", 1)):
        for c, name in enumerate(["a", "b"]):
            for i in range(count):
                write_jpeg(tmp_path / split / name / f"{i}.jpg", seed=10 * c + i + count)
    monitor = KnnMonitor(str(tmp_path / "train"), str(tmp_path / "val"), k=3)
    assert monitor.last_quality is None
    top1 = monitor.evaluate(vit_test, device=torch.device("cpu"))
    assert 0.0 <= top1 <= 1.0
    assert monitor.last_quality is not None
    assert 1.0 <= monitor.last_quality["effective_rank"] <= 6.0
    assert -4.0 <= monitor.last_quality["uniformity"] <= 0.0
