"""The kNN monitor's verdict on a run: the start measurement, ``teacher_best.safetensors`` and
``summary.json`` (start -> best -> last), across a resume.

Runs use ``vit_test`` on 10 drawn 32 px images, CPU fp32. Where a known best is needed, the
monitor's ``evaluate`` is replaced by a fixed sequence of accuracies (the teacher is still the
one training produced, so the saved file can be compared with the epoch checkpoints).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import dinokit
from dinokit.training import runlog, train
from dinokit.training.checkpoint import load_checkpoint
from dinokit.training.metrics import read_metrics
from dinokit.training.monitor import KnnMonitor
from tests.training.test_run import STEPS_PER_EPOCH, fast_training, image_folder, tiny_config

__all__ = ["fast_training", "image_folder"]  # shared fixtures


def monitored(image_folder: Path, out: Path, **overrides: Any) -> dinokit.TrainConfig:
    """A tiny run with the kNN monitor on its own images and a checkpoint every epoch."""
    folders = {"eval_train": str(image_folder), "eval_val": str(image_folder), "knn_k": 5}
    return tiny_config(image_folder, out, keep_every=1, **folders, **overrides)


def fixed_accuracies(
    monkeypatch: pytest.MonkeyPatch, values: list[float], *, pixels: float = 0.20
) -> list[int]:
    """Make the monitor return ``values`` in turn, and ``pixels`` for the raw-pixel baseline;
    returns the measurements of the teacher it made (the baseline's calls are not counted)."""
    remaining: Iterator[float] = iter(values)
    called: list[int] = []

    def evaluate(self: KnnMonitor, backbone: Any, **kwargs: Any) -> float:
        called.append(len(called))
        return next(remaining)

    monkeypatch.setattr(KnnMonitor, "evaluate", evaluate)
    monkeypatch.setattr(KnnMonitor, "raw_pixel_baseline", lambda self: pixels)
    return called


def knn_records(run: Path) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "knn"]


def teacher_at_epoch(run: Path, epoch: int) -> dict[str, torch.Tensor]:
    """The teacher backbone of ``checkpoints/epoch_<epoch>.pt``."""
    saved = load_checkpoint(run / "checkpoints" / f"epoch_{epoch:04d}.pt")
    return dict(saved["teacher"]["backbone"])


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_start_is_measured_before_the_first_step(image_folder: Path, tmp_path: Path) -> None:
    """The real monitor: the first record of metrics.jsonl is the kNN of the untrained teacher,
    then the baselines (from scratch, the random init is that start, not measured again)."""
    run = train(monitored(image_folder, tmp_path / "run", epochs=1))
    records = read_metrics(run / "metrics.jsonl")
    assert records[0]["kind"] == "knn"
    assert (records[0]["step"], records[0]["epoch"]) == (0, 0)
    pixels, random_init = records[1], records[2]
    assert pixels["kind"] == random_init["kind"] == "baseline"
    assert (pixels["name"], pixels["k"]) == ("raw pixels (32 px)", 5)
    # The same folder for reference and query: every image finds itself first.
    assert pixels["knn_top1"] == 1.0
    assert random_init["name"] == "random init" and random_init["is_start"] is True
    assert random_init["knn_top1"] == records[0]["knn_top1"]
    assert records[3]["kind"] == "step" and records[3]["step"] == 1
    summary = json.loads((run / "summary.json").read_text())["knn"]
    knn = knn_records(run)
    assert summary["start"]["knn_top1"] == knn[0]["knn_top1"]
    assert summary["last"]["knn_top1"] == knn[-1]["knn_top1"]
    assert summary["best"]["knn_top1"] == max(r["knn_top1"] for r in knn)
    assert (run / "teacher_best.safetensors").is_file()


def test_best_teacher_and_summary_follow_the_measurements(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Measurements 30% (start), 50% (epoch 1), 40% (epoch 2): the best is epoch 1; raw
    pixels at 20% are beaten, so no sentence about them."""
    fixed_accuracies(monkeypatch, [0.30, 0.50, 0.40])
    with caplog.at_level(logging.INFO, logger=runlog.__name__):
        run = train(monitored(image_folder, tmp_path / "run"))
    assert [r["knn_top1"] for r in knn_records(run)] == [0.30, 0.50, 0.40]
    line = (
        "kNN top-1 (k=5): start 30.0% (random init) -> best 50.0% (epoch 1) -> last 40.0%; "
        "raw pixels 20.0%"
    )
    assert line in caplog.messages
    assert not any("worse" in m or "below raw pixels" in m for m in caplog.messages)
    summary = json.loads((run / "summary.json").read_text())["knn"]
    assert summary["line"] == line
    assert summary["best"] == {"knn_top1": 0.50, "epoch": 1, "step": STEPS_PER_EPOCH}
    assert summary["worse_than_start"] is False
    assert summary["below_raw_pixels"] is None
    assert summary["baselines"] == [
        {"name": "raw pixels (32 px)", "knn_top1": 0.20, "is_start": False},
        {"name": "random init", "knn_top1": 0.30, "is_start": True},
    ]

    best = run / "teacher_best.safetensors"
    assert_same_tensors(load_file(str(best)), teacher_at_epoch(run, 1))
    # Not the last teacher: training went on after the best.
    assert not torch.equal(
        load_file(str(best))["pos_embed"], load_file(str(run / "teacher.safetensors"))["pos_embed"]
    )
    # Same writer as teacher.safetensors: it loads as a model, with its provenance.
    model = dinokit.load(best)
    assert model.config.name == dinokit.load(run).config.name
    # load(run) stays the last teacher.
    last = dinokit.load(run).vit.state_dict()
    assert_same_tensors(dict(last), dict(load_file(str(run / "teacher.safetensors"))))


def test_a_run_ending_below_its_start_warns(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Start 60%, then 40%, 50%: the best is the starting model, and a warning is logged;
    raw pixels at 55% are above the last (5 points) but below the best."""
    fixed_accuracies(monkeypatch, [0.60, 0.40, 0.50], pixels=0.55)
    with caplog.at_level(logging.INFO, logger=runlog.__name__):
        run = train(monitored(image_folder, tmp_path / "run"))
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("training made the features worse on these labels" in m for m in warnings)
    below = "The last is 5.0 points below raw pixels (55.0%); the best (epoch 0) beat them."
    assert below in caplog.messages
    summary = json.loads((run / "summary.json").read_text())["knn"]
    assert summary["best"]["epoch"] == 0 and summary["worse_than_start"] is True
    assert summary["below_raw_pixels"] == below
    # The best is the untrained teacher: not the epoch-1 one.
    best = load_file(str(run / "teacher_best.safetensors"))
    assert not torch.equal(best["pos_embed"], teacher_at_epoch(run, 1)["pos_embed"])


@pytest.mark.parametrize(
    ("after_resume", "best_epoch"), [(0.40, 1), (0.70, 2)], ids=["worse", "better"]
)
def test_resume_keeps_the_earlier_best(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    after_resume: float,
    best_epoch: int,
) -> None:
    """Stopped after epoch 1 (30% -> 50%), resumed: epoch 2's measurement replaces the best
    teacher only when it beats 50%, and neither the start nor the baselines are measured
    again (read back from metrics.jsonl)."""
    out = tmp_path / "run"
    fixed_accuracies(monkeypatch, [0.30, 0.50], pixels=0.90)
    train(monitored(image_folder, out, max_steps=STEPS_PER_EPOCH))
    calls = fixed_accuracies(monkeypatch, [after_resume], pixels=0.0)
    train(monitored(image_folder, out, resume=True))
    assert len(calls) == 1  # epoch 2 only
    baselines = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "baseline"]
    assert [(r["name"], r["knn_top1"]) for r in baselines] == [
        ("raw pixels (32 px)", 0.90),
        ("random init", 0.30),
    ]
    assert [r["knn_top1"] for r in knn_records(out)] == [0.30, 0.50, after_resume]
    summary = json.loads((out / "summary.json").read_text())["knn"]
    assert summary["start"]["knn_top1"] == 0.30
    assert summary["line"].endswith("; raw pixels 90.0%")
    best_gap = 100 * (0.90 - max(0.50, after_resume))
    assert f"the best is {best_gap:.1f} points below them" in summary["below_raw_pixels"]
    assert summary["best"]["epoch"] == best_epoch
    assert summary["last"]["knn_top1"] == after_resume
    best = load_file(str(out / "teacher_best.safetensors"))
    assert_same_tensors(best, teacher_at_epoch(out, best_epoch))
