"""Tests for dinokit.runtime.precision (reference: facebookresearch/dino main_dino.py use_fp16)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from dinokit.runtime import machine
from dinokit.runtime import precision as precision_mod
from dinokit.runtime.precision import (
    AUTO_PRECISION_ENV,
    autocast_context,
    autocast_dtype,
    make_grad_scaler,
    resolve_precision,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` decided by the hardware alone (the suite may run with the override set)."""
    monkeypatch.delenv(AUTO_PRECISION_ENV, raising=False)


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
@pytest.mark.usefixtures("no_override")
def test_resolution_on_cpu(
    monkeypatch: pytest.MonkeyPatch, requested: str, cpu_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(precision_mod, "cpu_supports_bf16", lambda: cpu_bf16)
    assert resolve_precision(requested, CPU) == expected


@pytest.mark.parametrize(
    ("requested", "major", "expected"),
    [("auto", 9, "bf16"), ("auto", 8, "bf16"), ("auto", 7, "fp16"), ("fp16", 9, "fp16"),
     ("fp32", 7, "fp32"), ("bf16", 8, "bf16")],
)  # fmt: skip
@pytest.mark.usefixtures("no_override")
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


@pytest.mark.usefixtures("no_override")
def test_other_devices_and_bad_names() -> None:
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("float16", CPU)
    with pytest.raises(ValueError, match="resolved"):
        autocast_dtype("auto")


@pytest.mark.usefixtures("no_override")
def test_this_machine_auto_matches_cpu_flags() -> None:
    assert resolve_precision("auto", CPU) == ("bf16" if machine.cpu_supports_bf16() else "fp32")


@pytest.mark.parametrize(
    ("forced", "cpu_bf16", "expected"),
    [("fp32", True, "fp32"), ("bf16", False, "bf16"), (" BF16 ", True, "bf16"),
     ("fp16", True, "fp16"), ("", True, "bf16"), ("", False, "fp32")],
)  # fmt: skip
def test_the_environment_variable_overrides_auto(
    monkeypatch: pytest.MonkeyPatch, forced: str, cpu_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(precision_mod, "cpu_supports_bf16", lambda: cpu_bf16)
    monkeypatch.setenv(AUTO_PRECISION_ENV, forced)
    assert resolve_precision("auto", CPU) == expected
    # An explicit request is kept whatever the variable says.
    assert resolve_precision("fp32", CPU) == "fp32"


def test_a_forced_bf16_on_old_cuda_is_the_explicit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTO_PRECISION_ENV, "bf16")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ValueError, match="V100 has no native bf16"):
        resolve_precision("auto", CUDA)


def test_a_bad_override_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTO_PRECISION_ENV, "half")
    with pytest.raises(ValueError, match=r"^DINOKIT_AUTO_PRECISION='half' is not a precision") as e:
        resolve_precision("auto", CPU)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("cap", "native"),
    [(None, True), ("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
     ("AVX512_CORE_AMX", True), ("DEFAULT", True)],
)  # fmt: skip
def test_a_onednn_cap_below_bf16_means_no_native_bf16(
    monkeypatch: pytest.MonkeyPatch, cap: str | None, native: bool
) -> None:
    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2", "avx512f", "avx512_bf16"])
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert machine.cpu_supports_bf16() is native
    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2", "avx512f"])
    assert machine.cpu_supports_bf16() is False


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
