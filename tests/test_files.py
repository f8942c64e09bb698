"""Atomic writes: the final file appears whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dinokit._files import atomic_path, atomic_write, default_mode, save_npy


def test_atomic_write_creates_folders_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "file.txt"
    assert atomic_write(out, lambda tmp: tmp.write_text("hello")) == out
    assert out.read_text() == "hello"
    assert sorted(p.name for p in out.parent.iterdir()) == ["file.txt"]
    assert out.stat().st_mode & 0o777 == default_mode()


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "file.txt"
    out.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(out, broken)
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_interrupt_inside_a_durable_block_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "ckpt.pt"
    out.write_bytes(b"good")
    with pytest.raises(KeyboardInterrupt), atomic_path(out, durable=True) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert out.read_bytes() == b"good" and os.listdir(tmp_path) == ["ckpt.pt"]


def test_save_npy_writes_exactly_the_given_name(tmp_path: Path) -> None:
    out = tmp_path / "vectors.tmp"  # no ".npy" appended, unlike numpy.save on a name
    save_npy(out, np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(np.load(out), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert os.listdir(tmp_path) == ["vectors.tmp"]
