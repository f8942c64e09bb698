"""Tests for dinokit.training.checkpoint (atomic save, weights-only load, RNG round-trips)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dinokit.training import checkpoint as checkpoint_mod
from dinokit.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _training_like_state() -> dict[str, Any]:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "epoch": 3,
        "config": {"lr": 5e-4, "name": "run", "crops": [2, 6], "none": None},
        "rng": capture_rng_state(),
    }


def test_round_trip(tmp_path: Path) -> None:
    state = _training_like_state()
    path = tmp_path / "sub" / "last.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["config"] == state["config"]
    for key, value in state["model"].items():
        assert torch.equal(loaded["model"][key], value)
    nn.Linear(4, 3).load_state_dict(loaded["model"])
    optimizer = torch.optim.AdamW(nn.Linear(4, 3).parameters())
    optimizer.load_state_dict(loaded["optimizer"])
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["last.pt"]


def test_failed_save_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    real_save = torch.save

    def failing_save(obj: Any, f: Any) -> None:
        real_save({"partial": torch.zeros(1000)}, f)  # some bytes reach the temp file
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_mod.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_keyboard_interrupt_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(obj: Any, f: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_mod.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", {"step": 1})
    assert list(tmp_path.iterdir()) == []


def test_unloadable_values_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\['extra'\]\[0\] has type ndarray"):
        save_checkpoint(tmp_path / "c.pt", {"extra": [np.zeros(2)]})
    with pytest.raises(TypeError, match="Path"):
        save_checkpoint(tmp_path / "c.pt", {"path": tmp_path})
    assert list(tmp_path.iterdir()) == []


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a checkpoint dict"):
        load_checkpoint(tmp_path / "list.pt")
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="PyTorch weights file"):
        load_checkpoint(tmp_path / "truncated.pt")


def _draws() -> tuple[list[float], list[float], float, torch.Tensor]:
    return (
        [*(random.random() for _ in range(3)), random.gauss(0, 1)],
        [*np.random.rand(3).tolist(), float(np.random.randn())],
        float(np.random.randn()),  # draws the cached second Gaussian
        torch.rand(5),
    )


def test_rng_round_trip_through_a_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leave a cached gauss_next in the Python state
    np.random.randn()  # and a cached Gaussian in NumPy's
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = _draws()
    _draws()  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = _draws()
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


def test_cuda_state_skipped_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    state = capture_rng_state()
    state["cuda"] = torch.zeros(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    restore_rng_state(state)  # no error
