"""The training input pipeline: multi-crop views, resumable sampling, per-image seeds.

Every image's augmentation is seeded from ``(seed, epoch, index)``, so a run resumed in the
middle of an epoch sees exactly the views it would have seen without the interruption,
whatever the number of loader workers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data import Failed, ImageDataset, ImageRecord, Sample, collate_skip_failed
from ..dino import MultiCropTransform

logger = logging.getLogger(__name__)

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant for seed mixing


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for the augmentation of image ``index`` in ``epoch``."""
    value = (seed * _MIX + epoch * 0x632BE59BD9B4E019 + index * 0x85EBCA77C2B2AE63) & (2**64 - 1)
    value ^= value >> 31
    return value & (2**63 - 1)


class SeededViews(Dataset[Sample[list[torch.Tensor]] | Failed]):
    """Wraps an :class:`ImageDataset`; items are addressed by ``(epoch, index)`` keys."""

    def __init__(self, images: ImageDataset[list[torch.Tensor]], seed: int) -> None:
        self.images = images
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> Sample[list[torch.Tensor]] | Failed:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.images[index]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` keys: a seeded shuffle per epoch, one shard per rank.

    Like ``DistributedSampler`` + ``BatchSampler(drop_last=True)`` (the reference's
    choice), with ``start_batch`` to resume in the middle of an epoch.

    Args:
        n_images: Dataset size.
        batch_size: Images per batch on this rank.
        seed: Run seed.
        epoch: Epoch to sample.
        rank: This process's rank.
        world_size: Number of processes.
        start_batch: Skip this many batches (already trained on).
    """

    def __init__(
        self,
        n_images: int,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        self.n_images = n_images
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    def _shard(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n_images, generator=generator).tolist()
        per_rank = -(-self.n_images // self.world_size)
        order += order[: per_rank * self.world_size - len(order)]  # pad like DistributedSampler
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        per_rank = -(-self.n_images // self.world_size)
        return max(per_rank // self.batch_size - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        shard = self._shard()
        n_batches = len(shard) // self.batch_size
        for b in range(self.start_batch, n_batches):
            chunk = shard[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk]


def steps_per_epoch(n_images: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps in one epoch (incomplete last batches are dropped, as the reference)."""
    per_rank = math.ceil(n_images / world_size)
    steps = per_rank // batch_size
    if steps == 0:
        raise ValueError(
            f"{n_images} images are fewer than one batch of {batch_size} per process; "
            "lower --batch-size or add images"
        )
    return steps


def build_views_dataset(
    records: Sequence[ImageRecord], transform: MultiCropTransform, *, seed: int
) -> SeededViews:
    """The training dataset: multi-crop views of each image, seeded per image and epoch.

    JPEGs are decoded at reduced size only as far as no crop gets upsampled
    (:attr:`MultiCropTransform.decode_size`).
    """
    dataset = ImageDataset(records, transform, draft_size=transform.decode_size)
    return SeededViews(dataset, seed)


def epoch_loader(
    dataset: SeededViews,
    sampler: EpochBatchSampler,
    *,
    workers: int,
    pin_memory: bool,
    prefetch: int = 4,
) -> DataLoader[Any]:
    """A ``DataLoader`` over one epoch's batches (unreadable images set aside per batch);
    each worker keeps ``prefetch`` batches ready.

    The loader gets its own generator: each iterator draws its workers' base seed from it,
    and drawing from the global RNG instead would shift the drop-path masks of a run resumed
    in the middle of an epoch (which creates one iterator more than a straight run).
    """
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_failed,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=prefetch if workers > 0 else None,
        generator=torch.Generator().manual_seed(sample_seed(sampler.seed, sampler.epoch, -1)),
    )
