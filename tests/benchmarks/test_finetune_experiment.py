"""``benchmarks/finetune_experiment.py``: its smallest stage end to end on generated images,
the supervised stand-in, and the results file, report and plot of every stage."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmarks.finetune.plot import plot_results
from benchmarks.finetune.report import render
from benchmarks.finetune.results import (
    ArmRun,
    Evaluation,
    FineTuning,
    GuideRun,
    KnnPoint,
    ProbeRow,
    Probes,
    Results,
    Scratch,
    Strong,
    TimedRun,
)
from benchmarks.finetune.settings import Experiment
from benchmarks.finetune.supervised import train_supervised
from PIL import Image

import dinokit

REPO = Path(__file__).resolve().parents[2]


def _folder(root: Path, per_class: int, size: int, seed: int) -> Path:
    """Two classes of noisy colour fields (red, blue), ``per_class`` PNGs each."""
    rng = np.random.default_rng(seed)
    for c, colour in enumerate([(200, 40, 40), (40, 60, 200)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-40, 41, (size, size, 3))
            pixels = np.clip(np.asarray(colour)[None, None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.mark.slow
def test_smoke_pretrain_stage_and_report(tmp_path: Path) -> None:
    """``--smoke --stages pretrain,report``: one ``dinokit train`` run at its default precision
    (``auto``: bf16 or fp32 on the CPU; no value is compared), its kNN curve, the table and
    the plot."""
    data = tmp_path / "data"
    _folder(data / "cifar10-mini" / "train", 8, 32, seed=0)
    _folder(data / "cifar10-mini" / "test", 4, 32, seed=1)
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "benchmarks" / "finetune_experiment.py"), "--smoke"]
    command += ["--data", str(data), "--out", str(out), "--stages", "pretrain,report"]
    command += ["--threads", "1"]
    paths = [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    saved = json.loads((out / "results.json").read_text())
    assert list(saved) == ["pretrain"]
    results = Results.load(out / "results.json")
    assert results.pretrain is not None
    # --smoke: 1 epoch, so kNN at init and after the epoch.
    assert [p.epoch for p in results.pretrain.curve] == [0.0, 1.0]
    assert all(0.0 <= p.knn <= 1.0 for p in results.pretrain.curve)
    assert (out / "pretrain" / "teacher.safetensors").exists()
    report = (out / "results.md").read_text()
    assert "## The pretrained model: 1 epochs on cifar10-mini" in report
    assert report in done.stdout
    assert (out / "curves.png").stat().st_size > 0


def test_supervised_stand_in_is_saved_and_reused(tmp_path: Path) -> None:
    """Two steps of batch 8 on 16 images (fp32), saved as a dinokit file, reused after."""
    data = _folder(tmp_path / "train", 8, 32, seed=0)
    path = tmp_path / "supervised" / "backbone.safetensors"
    seconds = train_supervised(data, path, epochs=1, seed=0, threads=1, batch_size=8)
    assert seconds > 0
    model = dinokit.load(path)
    assert model.config.name == "vit_small32"
    modified = path.stat().st_mtime_ns
    assert train_supervised(data, path, epochs=1, seed=0, threads=1, batch_size=8) == seconds
    assert path.stat().st_mtime_ns == modified
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        train_supervised(data, tmp_path / "other.safetensors", epochs=1, seed=0, threads=1,
                         batch_size=64)  # fmt: skip


def _evaluation(knn: float) -> Evaluation:
    return Evaluation("center-crop", "teacher", knn, 12.5)


def _arm(seed: int, after: float, cifar: float) -> ArmRun:
    curve = [KnnPoint(0.0, 0.2, 10.0), KnnPoint(1.0, after, 11.0)]
    return ArmRun(seed, 120.0, _evaluation(after), _evaluation(cifar), curve)


def _every_stage() -> Results:
    curve = [KnnPoint(0.0, 0.25, 9.0), KnnPoint(1.0, 0.28, 10.0)]
    arms = {"dinokit defaults": [_arm(0, 0.30, 0.26), _arm(1, 0.32, 0.27)]}
    return Results(
        scratch=Scratch(TimedRun(900.0, curve), GuideRun(steps=50, seconds=910.0, curve=curve)),
        seeds={"recipe": {"0": curve, "1": curve}, "recipe without KoLeo": {"0": curve}},
        pretrain=TimedRun(1800.0, curve),
        finetune=FineTuning(_evaluation(0.27), _evaluation(0.29), arms),
        strong=Strong(_evaluation(0.37), _evaluation(0.5), arms, seconds=600.0, epochs=10),
        extras={"pretrained": [_evaluation(0.27)], "fine-tuned": [_evaluation(0.3)]},
        probes=Probes(50, {"recipe": ProbeRow(0.253, 0.27, 4.3, 4.1, math.log(256))}),
        budget={"weak": FineTuning(_evaluation(0.254), _evaluation(0.291), arms)},
    )


def test_results_file_round_trip(tmp_path: Path) -> None:
    """Every stage's results come back from ``results.json`` as the same typed values."""
    results = _every_stage()
    results.save(tmp_path / "results.json")
    assert Results.load(tmp_path / "results.json") == results
    assert Results.load(tmp_path / "missing.json") == Results()
    partial = Results(pretrain=results.pretrain)
    partial.save(tmp_path / "partial.json")
    assert list(json.loads((tmp_path / "partial.json").read_text())) == ["pretrain"]


def test_report_and_plot_of_every_stage(tmp_path: Path) -> None:
    """One table per stage; two seeds give mean ± sample sd (0.30, 0.32: 31.0 ± 1.4)."""
    report = render(_every_stage(), Experiment(seeds=(0, 1), ft_epochs=4))
    assert "| dinokit train | 15.0 min | 39 | 25.0% | **28.0%** |" in report  # 5000 // 128
    assert "| guide's lightly loop | 15.2 min | 50 | 25.0% | **28.0%** |" in report
    assert "| recipe | 0, 1 | 25.0 ± 0.0 -> 28.0 ± 0.0 | 28.0, 28.0 |" in report
    assert "Teacher kNN top-1 per epoch (%): 25.0 -> 28.0; 30.0 min." in report
    assert "## Fine-tuning on imagenette-mini (seeds 0, 1, 4 epochs)" in report
    assert "Pretrained model before fine-tuning: 27.0% (cifar10-mini test: 29.0%)" in report
    assert (
        "| dinokit defaults | 31.0 ± 1.4 | 30.0, 32.0 | 26.5 ± 0.7 | 26.0, 27.0 | 2.0 |" in report
    )
    assert "supervised on cifar10-mini (10 epochs, 10.0 min)" in report
    assert "Before: imagenette-mini 37.0%, cifar10-mini 50.0%" in report
    assert "| fine-tuned | center-crop | teacher | 30.0% | 12.5 |" in report
    assert "| recipe | 25.3% | 27.0% | 4.10 -> 4.30 of 5.55 |" in report
    assert "## The weak start fine-tuned for a 15m budget (seeds 0, 1)" in report
    assert "Before: imagenette-mini 25.4%, cifar10-mini 29.1%" in report
    plot_results(_every_stage(), tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (1815, 440)  # three panels of 5.5 x 4 inches at 110 dpi
