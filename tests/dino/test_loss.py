"""Tests for dinokit.dino.loss (reference: facebookresearch/dino main_dino.py DINOLoss).

Expected values are computed with numpy, pair by pair, from the reference formula.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.distributed as dist
from numpy.typing import NDArray

from dinokit.dino.loss import DINOLoss, sinkhorn_knopp, teacher_temperature

Array = NDArray[np.float64]


def _softmax(x: Array) -> Array:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _log_softmax(x: Array) -> Array:
    shifted = x - x.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


def _reference_loss(
    student: Array, teacher: Array, center: Array, n_crops: int, t_temp: float, s_temp: float
) -> tuple[float, float, float]:
    """The reference loop; returns (loss, mean teacher entropy, mean pair KL)."""
    s_chunks = np.split(student / s_temp, n_crops)
    q_chunks = np.split(_softmax((teacher - center) / t_temp), 2)
    total, kl, n_terms = 0.0, 0.0, 0
    for iq, q in enumerate(q_chunks):
        for v, s in enumerate(s_chunks):
            if v == iq:
                continue
            log_p = _log_softmax(s)
            total += float(np.mean(np.sum(-q * log_p, axis=-1)))
            kl += float(np.mean(np.sum(q * (np.log(q) - log_p), axis=-1)))
            n_terms += 1
    q_all = np.concatenate(q_chunks)
    entropy = float(np.mean(-np.sum(q_all * np.log(q_all), axis=-1)))
    return total / n_terms, entropy, kl / n_terms


def test_small_case_by_hand() -> None:
    # K=3, B=1, 2 global + 1 local crop.
    student = np.array([[1.0, 0.0, -1.0], [0.5, 0.2, 0.1], [-0.3, 0.8, 0.0]])
    teacher = np.array([[0.2, 0.1, 0.0], [0.0, 0.3, -0.2]])
    loss_fn = DINOLoss(3, n_epochs=1)
    loss = loss_fn(torch.tensor(student), torch.tensor(teacher), 0)
    expected, entropy, kl = _reference_loss(student, teacher, np.zeros((1, 3)), 3, 0.04, 0.1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    stats = loss_fn.last_stats
    assert stats["loss"] == pytest.approx(expected, rel=1e-6)
    assert stats["teacher_entropy"] == pytest.approx(entropy, rel=1e-5, abs=1e-7)
    assert stats["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-6)
    assert stats["teacher_temp"] == pytest.approx(0.04)
    # Centre after one call: 0.9 * 0 + 0.1 * mean of the teacher rows.
    expected_center = 0.1 * teacher.mean(axis=0, keepdims=True)
    np.testing.assert_allclose(loss_fn.center.numpy(), expected_center, rtol=1e-6)


def test_random_case_with_centre_and_warmup() -> None:
    rng = np.random.default_rng(0)
    k, batch, n_crops = 7, 4, 5
    loss_fn = DINOLoss(
        k, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5, n_epochs=10
    )
    center = np.zeros((1, k))
    for epoch in range(3):
        student = rng.normal(size=(n_crops * batch, k)) * 3
        teacher = rng.normal(size=(2 * batch, k)) * 3
        t_temp = 0.04 + 0.03 * epoch / 4
        expected, _, _ = _reference_loss(student, teacher, center, n_crops, t_temp, 0.1)
        loss = loss_fn(torch.tensor(student, dtype=torch.float32), torch.tensor(teacher), epoch)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        center = 0.9 * center + 0.1 * teacher.mean(axis=0, keepdims=True)
        np.testing.assert_allclose(loss_fn.center.numpy(), center, rtol=1e-5, atol=1e-7)


def test_only_global_crops() -> None:
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    loss = DINOLoss(6, n_epochs=1)(torch.tensor(student), torch.tensor(teacher), 0)
    expected, _, _ = _reference_loss(student, teacher, np.zeros((1, 6)), 2, 0.04, 0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_gradient_reaches_student_only() -> None:
    student = torch.randn(6, 4, requires_grad=True)
    teacher = torch.randn(4, 4, requires_grad=True)
    DINOLoss(4, n_epochs=1)(student, teacher, 0).backward()
    assert student.grad is not None and torch.count_nonzero(student.grad) > 0
    assert teacher.grad is None


def test_teacher_temperature_schedule_matches_reference() -> None:
    warm, final, warmup_epochs, n_epochs = 0.04, 0.07, 30, 100
    reference = np.concatenate(
        (np.linspace(warm, final, warmup_epochs), np.ones(n_epochs - warmup_epochs) * final)
    )
    loss_fn = DINOLoss(
        8,
        warmup_teacher_temp=warm,
        teacher_temp=final,
        warmup_teacher_temp_epochs=warmup_epochs,
        n_epochs=n_epochs,
    )
    for epoch in range(n_epochs):
        assert loss_fn.teacher_temp_at(epoch) == pytest.approx(reference[epoch], abs=1e-12)
    assert loss_fn.teacher_temp_at(0) == pytest.approx(warm)
    assert loss_fn.teacher_temp_at(14.5) == pytest.approx(warm + (final - warm) * 0.5)
    assert loss_fn.teacher_temp_at(29) == pytest.approx(final)
    assert loss_fn.teacher_temp_at(1000) == pytest.approx(final)
    assert loss_fn.teacher_temp_at(-1) == pytest.approx(warm)


def test_teacher_temperature_edge_cases() -> None:
    kwargs = {"warmup_teacher_temp": 0.04, "teacher_temp": 0.07}
    assert teacher_temperature(5, warmup_epochs=0, **kwargs) == pytest.approx(0.07)
    # np.linspace(a, b, 1) == [a]: one warm-up epoch at a, then b.
    assert teacher_temperature(0, warmup_epochs=1, **kwargs) == pytest.approx(0.04)
    assert teacher_temperature(1, warmup_epochs=1, **kwargs) == pytest.approx(0.07)


def test_short_run_with_long_warmup_does_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    loss_fn = DINOLoss(
        5,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_epochs=30,
        n_epochs=1,
    )
    assert "longer than the run" in caplog.text
    for epoch in (0, 0.5, 1, 3, 50):
        loss = loss_fn(torch.randn(8, 5), torch.randn(4, 5), epoch)
        assert torch.isfinite(loss)


def test_no_all_reduce_without_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("all_reduce called without a process group")

    monkeypatch.setattr(dist, "all_reduce", fail)
    assert not dist.is_initialized()
    DINOLoss(3, n_epochs=1)(torch.randn(6, 3), torch.randn(4, 3), 0)


def test_all_reduce_averages_over_world(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[torch.Tensor] = []

    def fake_all_reduce(tensor: torch.Tensor) -> None:
        calls.append(tensor)
        tensor.mul_(2)  # two ranks with the same data

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    teacher = torch.randn(4, 3)
    loss_fn = DINOLoss(3, n_epochs=1)
    loss_fn(torch.randn(6, 3), teacher, 0)
    assert len(calls) == 1
    torch.testing.assert_close(loss_fn.center, 0.1 * teacher.mean(0, keepdim=True))


def test_low_precision_inputs_give_fp32_result() -> None:
    gen = torch.Generator().manual_seed(0)
    student = (torch.randn(20, 64, generator=gen) * 4).to(torch.bfloat16)
    teacher = (torch.randn(4, 64, generator=gen) * 4).to(torch.bfloat16)
    fp32_fn, bf16_fn, half_fn = (DINOLoss(64, n_epochs=1) for _ in range(3))
    fp32 = fp32_fn(student.float(), teacher.float(), 0)
    bf16 = bf16_fn(student, teacher, 0)
    half = half_fn(student.half(), teacher.half(), 0)  # bf16 values are exact in fp16 here
    assert bf16.dtype == torch.float32
    assert bf16.item() == pytest.approx(fp32.item(), abs=1e-6)
    assert half.item() == pytest.approx(fp32.item(), abs=1e-6)
    assert bf16_fn.center.dtype == torch.float32
    torch.testing.assert_close(bf16_fn.center, fp32_fn.center, rtol=0, atol=1e-7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = DINOLoss(64, n_epochs=1)(student.float(), teacher.float(), 0)
    assert autocast.dtype == torch.float32
    assert autocast.item() == pytest.approx(fp32.item(), abs=1e-6)


def test_center_is_a_buffer() -> None:
    loss_fn = DINOLoss(10, n_epochs=1)
    assert "center" in loss_fn.state_dict()
    assert loss_fn.center.shape == (1, 10)
    assert torch.count_nonzero(loss_fn.center) == 0


@pytest.mark.parametrize(
    ("student_shape", "teacher_shape", "match"),
    [
        ((6, 4), (4, 5), "columns"),
        ((6, 5), (3, 5), "multiple of n_global_crops"),
        ((7, 5), (4, 5), "multiple of the batch size"),
        ((2, 5), (4, 5), "views per image"),
        ((6,), (4, 5), "2-D"),
    ],
)
def test_shape_validation(
    student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        DINOLoss(5, n_epochs=1)(torch.randn(student_shape), torch.randn(teacher_shape), 0)


def test_explicit_n_crops_is_checked() -> None:
    loss_fn = DINOLoss(5, n_epochs=1, n_crops=4)
    loss_fn(torch.randn(8, 5), torch.randn(4, 5), 0)
    with pytest.raises(ValueError, match="expected 4 crops"):
        loss_fn(torch.randn(10, 5), torch.randn(4, 5), 0)


def _sinkhorn_numpy(
    logits: NDArray[np.float64], temp: float, iterations: int
) -> NDArray[np.float64]:
    """SwAV / DINOv2 ``sinkhorn_knopp_teacher`` written out in float64 numpy."""
    q = np.exp(logits / temp).T  # (K, B)
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        q = q / q.sum(axis=1, keepdims=True) / k
        q = q / q.sum(axis=0, keepdims=True) / b
    return (q * b).T


def test_sinkhorn_matches_the_formula_and_balances_prototypes() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=0.3, size=(12, 7))
    got = sinkhorn_knopp(torch.tensor(logits, dtype=torch.float32), 0.1, iterations=3)
    np.testing.assert_allclose(got.numpy(), _sinkhorn_numpy(logits, 0.1, 3), rtol=1e-4)
    np.testing.assert_allclose(got.sum(1).numpy(), np.ones(12), rtol=1e-5)
    # Many iterations converge to equal prototype mass: each column sums to B / K.
    many = sinkhorn_knopp(torch.tensor(logits, dtype=torch.float32), 0.1, iterations=200)
    np.testing.assert_allclose(many.sum(0).numpy(), np.full(7, 12 / 7), rtol=1e-3)


def test_sinkhorn_is_stable_for_large_logits() -> None:
    logits = torch.tensor([[100.0, -100.0], [-100.0, 100.0]])
    out = sinkhorn_knopp(logits, 0.04)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.numpy(), np.eye(2), atol=1e-6)


def test_sinkhorn_centering_loss_is_cross_entropy_with_balanced_targets() -> None:
    torch.manual_seed(0)
    batch, out_dim, n_crops = 5, 6, 4
    student = torch.randn(n_crops * batch, out_dim)
    teacher = torch.randn(2 * batch, out_dim)
    loss_fn = DINOLoss(out_dim, n_epochs=1, centering="sinkhorn", teacher_temp=0.07)
    loss = loss_fn(student, teacher, epoch=0)
    targets = _sinkhorn_numpy(teacher.double().numpy(), 0.07, 3).reshape(2, batch, out_dim)
    logp = torch.log_softmax(student.double() / 0.1, -1).numpy().reshape(n_crops, batch, out_dim)
    pairs = [(t, s) for t in range(2) for s in range(n_crops) if s != t]
    expected = np.mean([-(targets[t] * logp[s]).sum(-1).mean() for t, s in pairs])
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="centering"):
        DINOLoss(out_dim, n_epochs=1, centering="mean")


def test_sinkhorn_sums_over_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two ranks (threads here) with different batches must together get the rows that one
    # process computes for the union batch: every sum, count and max runs over both ranks.
    gen = torch.Generator().manual_seed(1)
    shards = [torch.randn(5, 4, generator=gen), torch.randn(3, 4, generator=gen) * 3]
    expected = sinkhorn_knopp(torch.cat(shards), 0.05)
    barrier = threading.Barrier(2)
    posted: dict[tuple[int, int], torch.Tensor] = {}
    local = threading.local()

    def fake_all_reduce(tensor: torch.Tensor, op: object = dist.ReduceOp.SUM) -> None:
        call = local.calls
        local.calls += 1
        posted[(call, local.rank)] = tensor.clone()
        barrier.wait()
        other = posted[(call, 1 - local.rank)]
        if op == dist.ReduceOp.MAX:
            tensor.copy_(torch.maximum(tensor, other))
        else:
            tensor.add_(other)
        barrier.wait()

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    results: dict[int, torch.Tensor] = {}

    def rank_main(rank: int) -> None:
        local.rank, local.calls = rank, 0
        results[rank] = sinkhorn_knopp(shards[rank], 0.05)

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    torch.testing.assert_close(torch.cat([results[0], results[1]]), expected)
