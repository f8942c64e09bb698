"""The training input pipeline: resumable sharded sampling and per-image seeded views."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dinokit.data import list_images
from dinokit.dino import MultiCropTransform
from dinokit.training.data import EpochBatchSampler, SeededViews, build_views_dataset, epoch_loader
from tests.training.test_run import image_folder

__all__ = ["image_folder"]  # the shared session fixture


def batches(n: int, batch: int, *, epoch: int = 0, rank: int = 0, world: int = 1, start: int = 0):
    sampler = EpochBatchSampler(
        n, batch, seed=7, epoch=epoch, rank=rank, world_size=world, start_batch=start
    )
    out = list(sampler)
    assert len(out) == len(sampler)
    return out


def indices(keys: list[list[tuple[int, int]]]) -> list[int]:
    return [index for batch in keys for _, index in batch]


@pytest.mark.parametrize(("n", "world"), [(12, 3), (10, 2), (10, 4)])
def test_shards_are_disjoint_and_cover_the_permutation(n: int, world: int) -> None:
    per_rank = -(-n // world)
    shards = [indices(batches(n, 1, rank=r, world=world)) for r in range(world)]
    assert all(len(shard) == per_rank for shard in shards)
    # Interleaving the shards gives back one permutation, padded (as DistributedSampler
    # does) by repeating its first elements up to a multiple of the world size.
    order = [shards[i % world][i // world] for i in range(per_rank * world)]
    assert sorted(order[:n]) == list(range(n))
    assert order[n:] == order[: per_rank * world - n]
    if n % world == 0:
        assert not set.intersection(*map(set, shards))


def test_ranks_first_batches_form_the_single_process_batch() -> None:
    """What makes a DDP step equal to a single-process step of the whole batch."""
    single = indices(batches(12, 4)[:1])
    ranks = [indices(batches(12, 2, rank=r, world=2)[:1]) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == sorted(single)


def test_epochs_shuffle_differently_and_reproducibly() -> None:
    assert batches(10, 2, epoch=3) == batches(10, 2, epoch=3)
    assert indices(batches(10, 2, epoch=3)) != indices(batches(10, 2, epoch=4))
    assert all(key[0] == 3 for batch in batches(10, 2, epoch=3) for key in batch)
    assert len(batches(11, 2)) == 5  # the incomplete last batch is dropped


@pytest.mark.parametrize("start", [0, 1, 3, 5, 6])
def test_start_batch_skips_exactly(start: int) -> None:
    full = batches(10, 2, rank=1, world=2, epoch=1)
    assert batches(10, 2, rank=1, world=2, epoch=1, start=start) == full[start:]


def views_dataset(folder: Path) -> SeededViews:
    transform = MultiCropTransform(global_size=32, local_size=16, n_local_crops=2)
    return build_views_dataset(list_images([folder]).records, transform, seed=3)


def test_views_depend_only_on_seed_epoch_and_index(image_folder: Path) -> None:
    dataset = views_dataset(image_folder)
    torch.manual_seed(0)
    first = dataset[(1, 4)]
    rng_state = torch.get_rng_state()
    others = [dataset[(1, i)] for i in (7, 2, 4)]
    assert torch.equal(torch.get_rng_state(), rng_state), "the global RNG was consumed"
    torch.manual_seed(123)
    again = views_dataset(image_folder)[(1, 4)]
    for views in (others[2].image, again.image):
        assert len(views) == 4 and [v.shape[-1] for v in views] == [32, 32, 16, 16]
        for expected, view in zip(first.image, views, strict=True):
            assert torch.equal(view, expected)
    next_epoch = dataset[(2, 4)].image
    assert not any(torch.equal(a, b) for a, b in zip(first.image, next_epoch, strict=True))
    assert not torch.equal(others[0].image[0], others[1].image[0])


def test_loader_workers_give_the_same_batches(image_folder: Path) -> None:
    dataset = views_dataset(image_folder)

    def load(workers: int) -> list[list[torch.Tensor]]:
        sampler = EpochBatchSampler(len(dataset), 3, seed=3, epoch=0, start_batch=1)
        return [b.images for b in epoch_loader(dataset, sampler, workers=workers, pin_memory=False)]

    in_process, with_workers = load(0), load(2)
    assert len(in_process) == 2
    for views_a, views_b in zip(in_process, with_workers, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(views_a, views_b, strict=True))
