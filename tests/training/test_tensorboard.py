"""``dinokit train --logger tensorboard``: the event files hold what ``metrics.jsonl`` holds."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import pytest

from dinokit.cli import main
from dinokit.training import TrainConfig
from tests.training.test_cli_train import SMALL, write_config
from tests.training.test_run import fast_training, image_folder

__all__ = ["fast_training", "image_folder"]  # shared fixtures

pytest.importorskip("tensorboard", reason="needs pip install 'dinokit[tensorboard]'")


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the run folder's event files, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_event_files_hold_the_metrics_and_the_knn_curve(image_folder: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "run"
    argv = ["train", str(image_folder), "--out", str(out), "--config", str(config)]
    argv += ["--epochs", "2", "--eval-train", str(image_folder), "--eval-val", str(image_folder)]
    assert main([*argv, "--logger", "tensorboard", "--no-progress"]) == 0
    assert list(out.glob("events.out.tfevents.*"))

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    knn = [r for r in records if r["kind"] == "knn"]
    scalars = _scalars(out)
    for key in ("loss", "lr", "teacher_entropy", "kl", "images_per_s"):
        want = [(r["step"], r[key]) for r in steps]
        assert [s for s, _ in scalars[f"train/{key}"]] == [s for s, _ in want]
        assert [v for _, v in scalars[f"train/{key}"]] == pytest.approx([v for _, v in want])
    curve = scalars["knn/knn_top1"]
    assert [s for s, _ in curve] == [r["step"] for r in knn] == [0, 2, 4]
    assert [v for _, v in curve] == pytest.approx([r["knn_top1"] for r in knn])


def test_old_tensorboard_key_reads_as_logger() -> None:
    assert TrainConfig.from_dict({"tensorboard": True}).logger == "tensorboard"
    assert TrainConfig.from_dict({"tensorboard": False}).logger == "jsonl"
    both = {"tensorboard": True, "logger": "jsonl"}  # a file that has both: logger wins
    assert TrainConfig.from_dict(both).logger == "jsonl"
    assert "tensorboard" not in {f.name for f in dataclasses.fields(TrainConfig)}  # no dead field
    with pytest.raises(ValueError, match="logger must be one of jsonl, tensorboard"):
        TrainConfig.from_dict({"data": ["x"], "logger": "wandb"}).validate()


def test_missing_package_fails_before_training(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # find_spec reports it missing
    config = write_config(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "run"
    argv = ["train", str(image_folder), "--out", str(out), "--config", str(config)]
    with caplog.at_level(logging.ERROR):
        assert main([*argv, "--logger", "tensorboard"]) == 2
    assert "pip install 'dinokit[tensorboard]'" in caplog.text
    assert not out.exists()
