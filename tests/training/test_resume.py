"""``--resume`` continues exactly: a run stopped anywhere and resumed equals a straight run.

"Equal" means bit-identical on the CPU: student, teacher, loss centre, optimizer moments,
position, RNG states and the logged losses. Stochastic depth is on, so the global RNG (drop
path masks) must be restored and must not be consumed differently by a resumed run.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from dinokit.training import loop, train
from tests.training.test_run import (
    STEPS_PER_EPOCH,
    fast_training,
    image_folder,
    last_checkpoint,
    step_records,
    tiny_config,
)

__all__ = ["fast_training", "image_folder"]  # shared fixtures

#: Compared between runs: everything but the metadata (whose config differs in max_steps).
STATE_KEYS = (
    "student",
    "teacher",
    "loss",
    "optimizer",
    "scaler",
    "epoch",
    "step_in_epoch",
    "global_step",
    "rng",
)


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two checkpoint trees differ (exact comparison), with the largest gaps."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{where}: {type(a).__name__} vs {type(b).__name__}"]
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{where}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"]
        if torch.equal(a, b):
            return []
        gap = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else "?"
        return [f"{where}: max |diff| {gap}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(set(a) ^ set(b), key=str)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{where}[{i}]")
        ]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def assert_same_run(run_a: Path, run_b: Path) -> None:
    """Same final state and the same logged loss at every step."""
    a, b = last_checkpoint(run_a), last_checkpoint(run_b)
    diffs = [d for key in STATE_KEYS for d in differences(a[key], b[key], key)]
    assert not diffs, "\n".join(diffs[:20])
    logged = ("step", "epoch", "loss", "lr", "teacher_entropy", "kl")
    records_a = [{k: r[k] for k in logged} for r in step_records(run_a)]
    records_b = [{k: r[k] for k in logged} for r in step_records(run_b)]
    assert records_b == records_a
    assert [r["step"] for r in records_a] == list(range(1, 2 * STEPS_PER_EPOCH + 1))


def stop_and_resume(
    config_kwargs: dict[str, Any], out: Path, data: Path, stops: tuple[int, ...]
) -> None:
    """Train with ``max_steps`` = each stop in turn (resuming from the 2nd), then finish."""
    for i, stop in enumerate(stops):
        train(tiny_config(data, out, max_steps=stop, resume=i > 0, **config_kwargs))
        assert last_checkpoint(out)["global_step"] == stop
    train(tiny_config(data, out, resume=True, **config_kwargs))


@pytest.fixture(scope="module")
def straight_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs in one go, stochastic depth on."""
    return train(
        tiny_config(image_folder, tmp_path_factory.mktemp("straight") / "run", drop_path=0.2)
    )


@pytest.mark.parametrize(
    "stops",
    [(STEPS_PER_EPOCH,), (3,), (2, STEPS_PER_EPOCH + 2)],
    ids=["epoch-end", "mid-epoch", "twice-mid-epoch"],
)
def test_resumed_run_equals_straight_run(
    straight_run: Path, image_folder: Path, tmp_path: Path, stops: tuple[int, ...]
) -> None:
    out = tmp_path / "run"
    stop_and_resume({"drop_path": 0.2}, out, image_folder, stops)
    assert_same_run(straight_run, out)


def test_resume_with_loader_workers_equals_straight_run(
    straight_run: Path, image_folder: Path, tmp_path: Path
) -> None:
    """Views are seeded per image, so worker processes change nothing."""
    out = tmp_path / "run"
    stop_and_resume({"drop_path": 0.2, "workers": 2}, out, image_folder, (3,))
    assert_same_run(straight_run, out)


def knn_records(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["knn_top1"]) for r in map(json.loads, lines) if r["kind"] == "knn"]


@pytest.mark.parametrize("stops", [(STEPS_PER_EPOCH,), (3,)], ids=["epoch-end", "mid-epoch"])
def test_resume_with_the_knn_monitor_equals_straight_run(
    image_folder: Path, tmp_path: Path, stops: tuple[int, ...]
) -> None:
    """The monitor measures right after the epoch-end checkpoint; its loaders have their own
    generator, so the next epoch's drop-path masks are those of a resumed run."""
    folders = {"eval_train": str(image_folder), "eval_val": str(image_folder), "knn_k": 5}
    monitor = {"drop_path": 0.2, **folders}
    straight = train(tiny_config(image_folder, tmp_path / "straight", **monitor))
    out = tmp_path / "run"
    stop_and_resume(monitor, out, image_folder, stops)
    assert_same_run(straight, out)
    assert knn_records(out) == knn_records(straight)
    assert [step for step, _ in knn_records(straight)] == [0, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


def test_resume_past_max_steps_trains_nothing(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny_config(image_folder, out, max_steps=3))
    train(tiny_config(image_folder, out, max_steps=3, resume=True))
    assert last_checkpoint(out)["global_step"] == 3
    assert [r["step"] for r in step_records(out)] == [1, 2, 3]


@pytest.mark.parametrize("at_step", [2, STEPS_PER_EPOCH], ids=["mid-epoch", "epoch-end"])
def test_ctrl_c_checkpoints_then_resume_finishes(
    straight_run: Path,
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    at_step: int,
) -> None:
    real_step = loop.train_step

    def step_then_ctrl_c(state: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        stats = real_step(state, *args, **kwargs)
        if state.global_step == at_step:
            # Only send SIGINT while train() has its handler up: the default handler would
            # interrupt the whole test session.
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)
        return stats

    monkeypatch.setattr(loop, "train_step", step_then_ctrl_c)
    out = tmp_path / "run"
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        train(tiny_config(out=out, data=image_folder, drop_path=0.2))
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert last_checkpoint(out)["global_step"] == at_step
    assert not (out / "teacher.safetensors").exists()  # not mistaken for a finished run

    monkeypatch.setattr(loop, "train_step", real_step)
    train(tiny_config(image_folder, out, drop_path=0.2, resume=True))
    assert (out / "teacher.safetensors").is_file()
    assert_same_run(straight_run, out)
