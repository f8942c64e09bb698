"""Tests for dinokit.training.precision (reference: facebookresearch/dino main_dino.py use_fp16)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from dinokit.training import precision as precision_mod
from dinokit.training.precision import (
    autocast_context,
    autocast_dtype,
    make_grad_scaler,
    resolve_precision,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("requested", "cpu_bf16", "expected"),
    [
        ("auto", False, "fp32"),
        ("auto", True, "bf16"),
        ("bf16", False, "bf16"),
        ("fp16", True, "fp16"),
        ("fp32", True, "fp32"),
    ],
)
def test_resolution_on_cpu(
    monkeypatch: pytest.MonkeyPatch, requested: str, cpu_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(precision_mod.env, "cpu_supports_bf16", lambda: cpu_bf16)
    assert resolve_precision(requested, CPU) == expected


@pytest.mark.parametrize(
    ("requested", "major", "expected"),
    [("auto", 9, "bf16"), ("auto", 8, "bf16"), ("auto", 7, "fp16"), ("fp16", 9, "fp16"),
     ("fp32", 7, "fp32"), ("bf16", 8, "bf16")],
)  # fmt: skip
def test_resolution_on_cuda(
    monkeypatch: pytest.MonkeyPatch, requested: str, major: int, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (major, 0))
    assert resolve_precision(requested, CUDA) == expected


def test_bf16_on_old_cuda_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ValueError, match="V100 has no native bf16"):
        resolve_precision("bf16", CUDA)


def test_other_devices_and_bad_names() -> None:
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("float16", CPU)
    with pytest.raises(ValueError, match="resolved"):
        autocast_dtype("auto")


def test_this_machine_auto_matches_cpu_flags() -> None:
    from dinokit.env import cpu_supports_bf16

    assert resolve_precision("auto", CPU) == ("bf16" if cpu_supports_bf16() else "fp32")


@pytest.mark.parametrize("name", ["bf16", "fp32"])
def test_scaler_disabled_without_fp16(name: str) -> None:
    scaler = make_grad_scaler(name, CPU)
    assert not scaler.is_enabled()
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss


def test_scaler_enabled_for_fp16() -> None:
    assert make_grad_scaler("fp16", CPU).is_enabled()


def test_autocast_contexts() -> None:
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    ctx = autocast_context("bf16", CPU)
    for _ in range(2):  # reusable, as the loop enters it every step
        with ctx:
            assert (a @ b).dtype == torch.bfloat16
    fp32 = autocast_context("fp32", CPU)
    assert isinstance(fp32, contextlib.nullcontext)
    with fp32:
        assert (a @ b).dtype == torch.float32
