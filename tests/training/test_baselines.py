"""The kNN monitor's baselines: raw pixels (the same vectors as ``dinokit evaluate``'s row)
and, for a fine-tuning run, the same architecture with random weights.

CPU fp32 throughout (``vit_test``, 32 px drawn images; pixel vectors are float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dinokit.api._evaluate import raw_pixel_row
from dinokit.models import Backbone, build_vit, save_backbone
from dinokit.sample_data import make_sample_images
from dinokit.training import train
from dinokit.training.metrics import read_metrics
from dinokit.training.monitor import KnnMonitor
from tests.models.checkpoints import random_backbone
from tests.training.test_run import fast_training, image_folder, tiny_config

__all__ = ["fast_training", "image_folder"]  # shared fixtures

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def eval_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Labelled train (3 per class) and val (2 per class) folders of 10 classes, 32 px."""
    root = tmp_path_factory.mktemp("eval")
    make_sample_images(root, per_class=3, val_per_class=2, size=32)
    return root / "train", root / "val"


def test_raw_pixels_are_evaluates_row(eval_folders: tuple[Path, Path]) -> None:
    train_dir, val_dir = eval_folders
    monitor = KnnMonitor(str(train_dir), str(val_dir), k=3)
    row = raw_pixel_row(train_dir, val_dir, k=[3], workers=1)
    assert row is not None
    assert monitor.raw_pixel_baseline() == row.knn[3]


def test_random_init_is_seeded_and_leaves_the_global_rng(
    eval_folders: tuple[Path, Path],
) -> None:
    """The baseline's weights come from its own seed; the run's RNG stream is untouched."""
    train_dir, val_dir = eval_folders
    monitor = KnnMonitor(str(train_dir), str(val_dir), k=3)
    config = random_backbone("vit_test", seed=0).config
    torch.manual_seed(123)
    before = torch.get_rng_state()
    top1 = monitor.random_init_baseline(config, seed=5, device=CPU)
    assert torch.equal(torch.get_rng_state(), before)

    torch.manual_seed(5)  # the same architecture, built the way training builds it
    expected = monitor.evaluate(Backbone(build_vit(config), config).eval(), device=CPU)
    assert top1 == expected


def test_fine_tuning_run_measures_the_random_init(
    image_folder: Path, eval_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    start = save_backbone(random_backbone("vit_test", seed=7), tmp_path / "start.safetensors")
    train_dir, val_dir = eval_folders
    config = tiny_config(
        image_folder,
        tmp_path / "run",
        weights=str(start),
        epochs=1,
        eval_train=str(train_dir),
        eval_val=str(val_dir),
        knn_k=3,
    )
    run = train(config)
    baselines = {
        r["name"]: r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "baseline"
    }
    assert sorted(baselines) == ["random init", "raw pixels (32 px)"]
    random_init = baselines["random init"]
    assert "is_start" not in random_init and random_init["k"] == 3
    summary = json.loads((run / "summary.json").read_text())["knn"]
    pixels = 100 * baselines["raw pixels (32 px)"]["knn_top1"]
    assert summary["line"].endswith(
        f"; raw pixels {pixels:.1f}%, random init {100 * random_init['knn_top1']:.1f}%"
    )
    assert "(random init)" not in summary["line"]  # the start is the pretrained weights
