"""The label-free check of runs without labels: a seeded sample of the training images, the
teacher's effective rank and uniformity before the first step and after each epoch, the
collapse alarm, and the end line (also after a resume).

Runs use ``vit_test`` on 10 drawn 32 px images, CPU fp32; the alarm is fed fp32 features.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from dinokit.data import list_images
from dinokit.evaluation import QualityScore, quality_score
from dinokit.runtime.distributed import ProcessInfo
from dinokit.training import runlog, train
from dinokit.training.metrics import LABEL_FREE_ADVICE, LabelFreePoint, read_metrics
from dinokit.training.monitor import LabelFreeCheck, label_free_alarm
from tests.training.test_run import (
    STEPS_PER_EPOCH,
    fast_training,
    image_folder,
    resolve,
    tiny_config,
)

__all__ = ["fast_training", "image_folder"]  # shared fixtures


def point(features: torch.Tensor, epoch: int = 0) -> LabelFreePoint:
    score = quality_score(features)
    return LabelFreePoint(score.effective_rank, score.uniformity, epoch, 0)


def label_free_records(run: Path) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "label_free"]


def test_alarm_fires_on_collapsed_features_only() -> None:
    """fp32 features (N=256, D=64). Thresholds from docs/using-embeddings.md ("How the
    label-free score tracked kNN accuracy"): one direction scored rank 1.95 (alarm), a
    healthy run halved its rank (no alarm)."""
    generator = torch.Generator().manual_seed(0)
    healthy = torch.randn(256, 64, generator=generator)
    start = point(healthy)
    assert label_free_alarm(start, start) is None
    # Every image the same vector: rank 1, uniformity 0.
    constant = point(torch.ones(256, 64))
    assert constant.effective_rank == pytest.approx(1.0, abs=1e-3)
    assert constant.uniformity == pytest.approx(0.0, abs=1e-6)
    alarm = label_free_alarm(start, constant)
    floor = max(2.0, start.effective_rank / 10)  # a tenth of the start, at least 2
    assert alarm is not None and alarm.startswith(f"effective rank 1.00 is below {floor:.2f}")
    # Squeezed into one direction (plus the mean), as the docs' "top 1" row.
    centred = healthy - healthy.mean(0)
    top = torch.linalg.svd(centred, full_matrices=False)
    one = healthy.mean(0) + top.U[:, :1] * top.S[:1] @ top.Vh[:1]
    assert label_free_alarm(start, point(one)) is not None
    # Half the directions kept: the rank falls, as in a healthy run from scratch.
    half = healthy.mean(0) + top.U[:, :32] * top.S[:32] @ top.Vh[:32]
    assert point(half).effective_rank < start.effective_rank
    assert label_free_alarm(start, point(half)) is None


def test_alarm_scales_with_the_start_and_watches_uniformity() -> None:
    start = LabelFreePoint(effective_rank=60.0, uniformity=-1.6, epoch=0, step=0)
    # max(2, 60 / 10) = 6: a rank of 5 is collapse for a model that started at 60.
    low = LabelFreePoint(effective_rank=5.0, uniformity=-1.5, epoch=1, step=3)
    assert "below 6.00" in str(label_free_alarm(start, low))
    assert label_free_alarm(start, LabelFreePoint(7.0, -1.5, 1, 3)) is None
    # A quarter of the start's uniformity (-0.4): above it, every image is nearly the same.
    near_zero = LabelFreePoint(effective_rank=30.0, uniformity=-0.3, epoch=1, step=3)
    assert "uniformity -0.300 is above -0.400" in str(label_free_alarm(start, near_zero))


def test_sample_is_seeded_and_leaves_the_global_rng(image_folder: Path) -> None:
    records = list_images(image_folder).records
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = LabelFreeCheck(records, sample=4, seed=3).records
    assert torch.equal(torch.get_rng_state(), before)
    assert a == LabelFreeCheck(records, sample=4, seed=3).records
    assert len(a) == 4 and a == sorted(a, key=records.index)  # in listing order
    assert a != LabelFreeCheck(records, sample=4, seed=4).records
    assert LabelFreeCheck(records, sample=1000).records == records


def test_run_without_labels_records_and_reports(
    image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=runlog.__name__):
        run = train(tiny_config(image_folder, tmp_path / "run"))
    records = read_metrics(run / "metrics.jsonl")
    assert records[0]["kind"] == "label_free" and records[0]["step"] == 0  # before step 1
    measured = label_free_records(run)
    assert [r["epoch"] for r in measured] == [0, 1, 2]
    assert [r["step"] for r in measured] == [0, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert all(r["effective_rank"] >= 1.0 and -4.0 <= r["uniformity"] <= 0.0 for r in measured)
    summary = json.loads((run / "summary.json").read_text())
    assert "knn" not in summary
    check = summary["label_free"]
    assert check["start"]["effective_rank"] == measured[0]["effective_rank"]
    assert check["last"]["uniformity"] == measured[-1]["uniformity"]
    assert check["collapsed"] == any(r["alarm"] for r in measured)
    assert check["line"].startswith(
        f"label-free check: effective rank {measured[0]['effective_rank']:.1f} -> "
        f"{measured[-1]['effective_rank']:.1f}, uniformity"
    )
    assert check["line"].endswith(LABEL_FREE_ADVICE)
    assert check["line"] in caplog.messages


def fixed_scores(monkeypatch: pytest.MonkeyPatch, ranks: list[float]) -> list[int]:
    """Make the check measure the effective ranks ``ranks`` in turn (uniformity -1)."""
    remaining: Iterator[float] = iter(ranks)
    called: list[int] = []

    def measure(self: LabelFreeCheck, backbone: Any, **kwargs: Any) -> QualityScore:
        called.append(len(called))
        rank = next(remaining)
        return QualityScore(effective_rank=rank, effective_rank_ratio=rank / 64, uniformity=-1.0)

    monkeypatch.setattr(LabelFreeCheck, "measure", measure)
    return called


def test_resume_compares_with_the_recorded_start(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Start 30, epoch 1 at 20 (a fall, no alarm); resumed, epoch 2 at 2.5: below a tenth of
    the recorded start (3.0), so the alarm fires although 2.5 is above the floor of 2 that a
    start measured again would give."""
    out = tmp_path / "run"
    fixed_scores(monkeypatch, [30.0, 20.0])
    train(tiny_config(image_folder, out, max_steps=STEPS_PER_EPOCH))
    calls = fixed_scores(monkeypatch, [2.5])
    with caplog.at_level(logging.INFO, logger=runlog.__name__):
        train(tiny_config(image_folder, out, resume=True))
    assert len(calls) == 1  # epoch 2 only: the start is read back
    measured = label_free_records(out)
    assert [(r["epoch"], r["effective_rank"]) for r in measured] == [(0, 30.0), (1, 20.0), (2, 2.5)]
    assert [r["alarm"] is not None for r in measured] == [False, False, True]
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("collapsing at epoch 2: effective rank 2.50 is below 3.00" in m for m in warnings)
    check = json.loads((out / "summary.json").read_text())["label_free"]
    assert check["collapsed"] is True and check["alarms"][0]["epoch"] == 2
    assert check["line"].startswith(
        "label-free check: effective rank 30.0 -> 2.5, uniformity -1.00 -> -1.00: collapse at "
        "epoch 2 (effective rank 2.50 is below 3.00 (start 30.00))."
    )


def test_runlog_samples_the_images_it_is_given(image_folder: Path, tmp_path: Path) -> None:
    """The run's image records, when passed, are the ones sampled; else the data is listed."""
    config = resolve(tiny_config(image_folder, tmp_path / "run"), n_images=10)
    process = ProcessInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    records = list_images(image_folder).records
    (tmp_path / "run").mkdir()
    given = runlog.RunLog(
        config,
        tmp_path / "run",
        process=process,
        total_steps=1,
        resume_step=None,
        images=records[:3],
    )
    listed = runlog.RunLog(
        config, tmp_path / "run", process=process, total_steps=1, resume_step=None
    )
    try:
        assert given.label_free is not None and given.label_free.records == records[:3]
        assert listed.label_free is not None and listed.label_free.records == records
    finally:
        given.close()
        listed.close()
