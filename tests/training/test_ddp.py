"""DDP on the CPU (gloo): two processes of batch B take the same step as one process of 2B.

The sampler shards one seeded permutation by ``rank::world``, so the two ranks' first
batches together are the single process's first batch, and views are seeded per image.
Gradients are averaged by DDP and the loss centre is all-reduced, so after one step the
networks and the centre match the single-process run up to float summation order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dinokit.training import TrainConfig, train
from dinokit.training import run as run_module
from tests._processes import become_rank, free_port
from tests.training.test_run import (
    fast_training,
    image_folder,
    last_checkpoint,
    step_records,
    tiny_config,
)

__all__ = ["fast_training", "image_folder"]  # shared fixtures

WORLD = 2
BATCH_PER_RANK = 2
#: The largest change of a weight in the first step: Adam's step is at most the lr, ~8e-6.
LR_STEP = 8e-6


def ddp_worker(rank: int, port: int, configs: list[TrainConfig]) -> None:
    """One torchrun-like process: the variables torchrun would set, then ``train``."""
    become_rank(rank, WORLD, port)
    run_module.plot_curves = lambda *args, **kwargs: None  # this process only
    train(configs[rank])


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, name: str) -> None:
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0, msg=lambda m: f"{name}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("use_bn_in_head", [False, True], ids=["plain-head", "batchnorm-head"])
def test_two_processes_step_like_one_process_with_the_whole_batch(
    image_folder: Path, tmp_path: Path, use_bn_in_head: bool
) -> None:
    """With BatchNorm in the head, both networks' BatchNorm layers are synchronised (as the
    reference's SyncBatchNorm): statistics of the global batch, not of each half."""
    # KoLeo spreads each process's own batch, so it is off for this equivalence.
    options = {
        "drop_path": 0.0,
        "max_steps": 1,
        "seed": 11,
        "lr": 5e-4,  # the reference's: LR_STEP below
        "koleo": 0.0,
        "use_bn_in_head": use_bn_in_head,
    }
    single = train(
        tiny_config(image_folder, tmp_path / "single", batch_size=WORLD * BATCH_PER_RANK, **options)
    )
    # Rank 1 is given its own folder only to show that it writes nothing at all.
    outs = [tmp_path / "ddp", tmp_path / "rank1"]
    configs = [tiny_config(image_folder, out, batch_size=BATCH_PER_RANK, **options) for out in outs]
    mp.spawn(ddp_worker, args=(free_port(), configs), nprocs=WORLD, join=True)

    assert not outs[1].exists()
    assert (outs[0] / "teacher.safetensors").is_file()
    expected, actual = last_checkpoint(single), last_checkpoint(outs[0])
    assert actual["global_step"] == expected["global_step"] == 1
    # The logged loss is the mean over processes of per-image means: the global batch's.
    [expected_step], [actual_step] = step_records(single), step_records(outs[0])
    for key in ("loss", "teacher_entropy", "kl"):
        assert actual_step[key] == pytest.approx(expected_step[key], rel=1e-6, abs=1e-7), key
    if use_bn_in_head:
        # Running statistics after one step: student (all views) and teacher (global views).
        # Two halves' statistics averaged would differ from these by ~1e-3 (variance).
        for branch in ("student", "teacher"):
            stats = [k for k in expected[branch]["head"] if "running" in k]
            assert len(stats) == 4  # mean and variance of the 2 BatchNorm layers
            for key in stats:
                assert_close(actual[branch]["head"][key], expected[branch]["head"][key], 1e-6, key)
    torch.testing.assert_close(
        actual["loss"]["center"], expected["loss"]["center"], atol=1e-6, rtol=0
    )
    # One step moves the student by about lr = 8e-6 per weight (Adam's first step is
    # lr * sign(grad) almost everywhere) and the teacher by 1 - 0.996 ** (4 / 1024) of that
    # (the momentum of a total batch of 4): the tolerances are a fraction of the student's
    # step. Summation order alone leaves ~3e-7.
    for branch, atol in (("student", 2e-6), ("teacher", 1e-7)):
        gaps = []
        for part in ("backbone", "head"):
            for key, value in expected[branch][part].items():
                if not use_bn_in_head:
                    assert_close(actual[branch][part][key], value, atol, f"{branch}.{part}.{key}")
                elif value.is_floating_point():
                    gaps.append((actual[branch][part][key] - value).abs().flatten())
        if gaps:
            # Adam's first step is lr * g / (|g| + eps): a gradient within float error of 0
            # may take either sign when the BatchNorm statistics are summed in another
            # order, moving its weight by up to 2 lr the other way; a handful do.
            gap = torch.cat(gaps)
            assert gap.max() <= 2 * LR_STEP, branch
            assert (gap > atol).float().mean() <= 1e-3, (branch, int((gap > atol).sum()))
    # Adam's first moment after one step is 0.1 x the gradient, which DDP averaged.
    for index, state in expected["optimizer"]["state"].items():
        torch.testing.assert_close(
            actual["optimizer"]["state"][index]["exp_avg"], state["exp_avg"], atol=5e-7, rtol=1e-4
        )


@pytest.mark.slow
def test_koleo_under_ddp_is_computed_per_rank(image_folder: Path, tmp_path: Path) -> None:
    options = {"drop_path": 0.0, "max_steps": 2, "seed": 3, "koleo": 0.1}
    outs = [tmp_path / "ddp", tmp_path / "rank1"]
    configs = [tiny_config(image_folder, out, batch_size=BATCH_PER_RANK, **options) for out in outs]
    mp.spawn(ddp_worker, args=(free_port(), configs), nprocs=WORLD, join=True)
    lines = (outs[0] / "metrics.jsonl").read_text().splitlines()
    steps = [r for r in map(json.loads, lines) if r.get("kind") == "step"]
    assert [r["step"] for r in steps] == [1, 2]
    # Two images per rank and crop: each one's nearest other image is the other one, so
    # the per-crop KoLeo is -log of one distance in (0, 2]; summed over 2 crops >= -2 ln 2.
    assert all(-2 * math.log(2) - 1e-6 <= r["koleo"] < 40 for r in steps)
