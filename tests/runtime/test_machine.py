"""The loader-worker rule and the CPU count it reads (dinokit.runtime.machine)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dinokit.runtime import machine


@pytest.mark.parametrize(
    ("cpus", "cap", "expected"),
    [(1, 8, 1), (2, 8, 1), (3, 4, 2), (6, 4, 4), (16, 8, 8), (64, 4, 4)],
)
def test_one_cpu_is_left_to_the_model_within_the_cap(
    monkeypatch: pytest.MonkeyPatch, cpus: int, cap: int, expected: int
) -> None:
    monkeypatch.setattr(machine, "usable_cpus", lambda: cpus)
    assert machine.default_workers(cap=cap) == expected


def test_usable_cpus_follow_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process pinned to 3 CPUs of a larger machine (taskset, a container's CPU set)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert machine.usable_cpus() == 3
    assert machine.default_workers(cap=8) == 2


def test_without_an_affinity_mask_every_cpu_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert machine.usable_cpus() == 12
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert machine.usable_cpus() == 1


def test_threaded_map_keeps_order_and_holds_a_bounded_window() -> None:
    """Results come in input order; with 2 threads, no more than 4 * 2 inputs are taken
    before the first result is handed out."""
    taken = []

    def items() -> Iterator[int]:
        for i in range(100):
            taken.append(i)
            yield i

    results = machine.threaded_map(lambda x: x * x, items(), workers=2)
    assert next(results) == 0
    assert len(taken) <= 4 * 2
    assert [0, *results] == [i * i for i in range(100)]


def test_threaded_map_raises_the_items_error() -> None:
    def fail(x: int) -> int:
        raise ValueError(f"bad item {x}")

    with pytest.raises(ValueError, match="bad item 0"):
        list(machine.threaded_map(fail, [0, 1], workers=1))
