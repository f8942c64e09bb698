"""``dinokit embed`` end to end: what it prints and writes, refusals, torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dinokit.cli import main
from dinokit.embeddings import Embeddings
from tests.embed._helpers import flat_folder, labelled_folder

# fp32: the torchrun shards are compared with a single process to 1e-5.
ARGS = ["--model", "vit_test", "--weights", "none", "--workers", "0", "--precision", "fp32"]


def test_embed_command_writes_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = labelled_folder(tmp_path / "img")
    (root / "a" / "bad.jpg").write_bytes(b"\xff\xd8 nope")
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(root), *ARGS, "--feature", "cls+mean", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"7 images -> {out}, 7 embedded now")
    assert "cls+mean of vit_test, center-crop 64, dim 128" in line
    assert line.endswith(f"1 skipped: see {tmp_path / 'emb.skipped.tsv'}")
    emb = Embeddings.load(out)
    assert emb.dim == 128 and emb.labelled
    assert main(["embed", str(root), *ARGS, "--out", str(out)]) == 2
    assert out.stat().st_size > 0
    assert main(["embed", str(root), *ARGS, "--out", str(out), "--overwrite"]) == 0
    assert Embeddings.load(out).dim == 64


def test_embed_command_bad_output_suffix(tmp_path: Path) -> None:
    flat_folder(tmp_path / "img", 1)
    assert main(["embed", str(tmp_path / "img"), *ARGS, "--out", str(tmp_path / "e.txt")]) == 2


@pytest.mark.slow
def test_torchrun_ranks_embed_shards_and_rank0_merges(tmp_path: Path) -> None:
    root = tmp_path / "img"
    flat_folder(root, 7)
    single, shared = tmp_path / "single.parquet", tmp_path / "ddp.parquet"
    assert main(["embed", str(root), *ARGS, "--out", str(single)]) == 0
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dinokit",
        "embed",
        str(root),
        *ARGS,
        "--device",
        "cpu",
        "--out",
        str(shared),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2" in done.stderr
    assert done.stdout.count("7 images") == 1, done.stdout  # rank 0 reports once
    a, b = Embeddings.load(single), Embeddings.load(shared)
    assert a.paths == b.paths
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
    assert not (tmp_path / ".ddp.parquet.parts").exists()
