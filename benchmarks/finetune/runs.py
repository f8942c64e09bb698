"""``dinokit train`` in a fresh process, what its ``metrics.jsonl`` says, ``dinokit evaluate``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dinokit
from dinokit.training.metrics import read_metrics

from .results import Evaluation, KnnPoint

logger = logging.getLogger("finetune_experiment")


def _option(key: str, value: Any) -> list[str]:
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + key.replace("_", "-")]
    return [flag, str(value)]


def dinokit_train(data: Path, out: Path, options: dict[str, Any], threads: int) -> float:
    """Run ``dinokit train`` in a fresh process; returns its wall-clock seconds.

    A finished run is reused. An interrupted one that saved a checkpoint is resumed; the time
    it had spent counts from its ``config.yaml`` (written at the start) to its last checkpoint
    (work after that checkpoint is redone), so the total stays comparable.
    """
    if (out / "teacher.safetensors").exists():
        return float(json.loads((out / "wall.json").read_text())["seconds"])
    command = [sys.executable, "-m", "dinokit", "train", str(data), "--out", str(out)]
    command += ["--no-progress"]
    last, config = out / "checkpoints" / "last.pt", out / "config.yaml"
    spent = 0.0
    if last.exists() and config.exists():
        spent = last.stat().st_mtime - config.stat().st_mtime
        command += ["--resume"]
        logger.info("resuming %s (%.1f min already spent)", out, spent / 60)
    elif out.exists():
        shutil.rmtree(out)
    for key, value in options.items():
        command += _option(key, value)
    logger.info("%s", " ".join(command))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = spent + time.perf_counter() - start
    (out / "wall.json").write_text(json.dumps({"seconds": seconds, "resumed": spent > 0}))
    return seconds


def knn_curve(run: Path) -> list[KnnPoint]:
    """The kNN records of a dinokit run's ``metrics.jsonl`` (epoch, top-1, effective rank)."""
    return [
        KnnPoint(float(r["epoch"]), float(r["knn_top1"]), float(r["effective_rank"]))
        for r in read_metrics(run / "metrics.jsonl")
        if r.get("kind") == "knn"
    ]


def teacher_entropy(run: Path) -> list[float]:
    """The teacher's entropy at each logged step of a dinokit run."""
    records = read_metrics(run / "metrics.jsonl")
    return [float(r["teacher_entropy"]) for r in records if r.get("kind") == "step"]


def evaluate(model: str | Path, train: Path, val: Path, **options: Any) -> list[Evaluation]:
    """``dinokit evaluate`` rows (kNN at k = 20 and the effective rank)."""
    rows = dinokit.evaluate(
        str(model), train=train, val=val, k=[20], workers=1, precision="fp32", **options
    )
    return [
        Evaluation(r.preprocess, r.branch, r.knn[20], r.quality.get("effective_rank")) for r in rows
    ]


def both_domains(data: Path, model: Path) -> tuple[Evaluation, Evaluation]:
    """kNN on the new domain (imagenette-mini val) and the pretraining one (cifar10-mini test)."""
    nette, cifar = data / "imagenette-mini", data / "cifar10-mini"
    return (
        evaluate(model, nette / "train", nette / "val")[0],
        evaluate(model, cifar / "train", cifar / "test")[0],
    )
