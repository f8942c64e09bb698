"""A map-style dataset of image files that reports unreadable files instead of raising.

Lightly's dataset crashes a whole run on one corrupt image; here a bad file becomes a
:class:`Failed` marker that travels through ``DataLoader`` worker processes with the batch
(logging or side channels inside workers would be lost), and :func:`collate_skip_failed`
separates the markers from the images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from dinokit.data.io import DecodeSize, ImageReadError, open_image
from dinokit.data.preprocess import collate_images
from dinokit.data.sources import ImageRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Sample(Generic[T]):
    """A successfully read and transformed image.

    Attributes:
        index: Position of the image in the dataset.
        image: The transform's output: a ``(3, H, W)`` tensor, or a list of views
            (multi-crop), or whatever the transform returns.
    """

    index: int
    image: T


@dataclass(frozen=True)
class Failed:
    """An image that could not be read.

    Attributes:
        index: Position of the image in the dataset.
        path: The file.
        reason: Why (see :class:`~dinokit.data.io.ImageReadError`).
    """

    index: int
    path: str
    reason: str


class Batch(NamedTuple):
    """What :func:`collate_skip_failed` returns.

    Attributes:
        indices: ``(B,)`` int64 dataset positions of the images that were read.
        images: ``(B, 3, H, W)`` for single-tensor transforms; a list with one
            ``(B, 3, h_v, w_v)`` tensor per view for multi-crop transforms; ``None`` when
            every image of the batch failed (``B == 0``).
        failed: The images that could not be read.
    """

    indices: Tensor
    images: Tensor | list[Tensor] | None
    failed: list[Failed]


class _PathArray:
    """Paths packed in two numpy arrays.

    A list of Python strings is copied page by page into every ``DataLoader`` worker as its
    reference counts are touched (pytorch/pytorch#13246); two arrays are not.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [os.fsencode(p) for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._data = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return os.fsdecode(self._data[start:end].tobytes())


class ImageDataset(Dataset[Sample[T] | Failed], Generic[T]):
    """Image files opened with :func:`~dinokit.data.io.open_image` and transformed.

    ``dataset[i]`` is a :class:`Sample` or, when the file cannot be read, a :class:`Failed`
    marker: unreadable files never raise. Errors raised by the transform itself are not
    caught (they are bugs, not bad files), except :class:`ImageReadError`.

    Args:
        images: Records from :func:`~dinokit.data.sources.list_images`, or plain paths.
        transform: PIL ``RGB`` image -> anything (an ``EvalTransform`` giving ``(3, H, W)``,
            a multi-crop transform giving a list of views, ...). Must be picklable to be used
            with ``DataLoader`` worker processes.
        draft_size: Passed to ``open_image``: JPEGs may be decoded at reduced scale while the
            short side stays >= ``draft_size`` (e.g. ``EvalTransform.draft_size``), or while
            they keep a :class:`~dinokit.data.io.DecodeSize` (e.g.
            ``MultiCropTransform.decode_size``).
    """

    def __init__(
        self,
        images: Sequence[ImageRecord] | Sequence[str | os.PathLike[str]],
        transform: Callable[[Image.Image], T],
        *,
        draft_size: int | DecodeSize | None = None,
    ) -> None:
        self._paths = _PathArray(
            [os.fspath(r.path if isinstance(r, ImageRecord) else r) for r in images]
        )
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> str:
        """The file of image ``index``."""
        return self._paths[range(len(self))[index]]

    def __getitem__(self, index: int) -> Sample[T] | Failed:
        index = range(len(self))[index]  # bounds check, negative indices
        path = self._paths[index]
        try:
            image = open_image(path, draft_size=self.draft_size)
            return Sample(index, self.transform(image))
        except ImageReadError as error:
            logger.debug("skipping %s", error)
            return Failed(index, path, error.reason)


def collate_skip_failed(batch: Sequence[Sample[Any] | Failed]) -> Batch:
    """Collates samples, setting aside the failures (a ``DataLoader`` ``collate_fn``).

    Args:
        batch: Items of an :class:`ImageDataset`; the samples' images are all ``(3, H, W)``
            tensors of one shape, or all lists of the same number of views, view ``v``
            having one shape across the batch.

    Returns:
        A :class:`Batch`: ``indices`` ``(B,)``, ``images`` ``(B, 3, H, W)`` or a list of
        ``(B, 3, h_v, w_v)`` (one per view), ``None`` if ``B == 0``; and the failures.

    Raises:
        TypeError: A transform output is neither a tensor nor a list/tuple of tensors.
        ValueError: Shapes or numbers of views differ within the batch.
    """
    samples = [item for item in batch if isinstance(item, Sample)]
    failed = [item for item in batch if isinstance(item, Failed)]
    indices = torch.tensor([s.index for s in samples], dtype=torch.long)
    if not samples:
        return Batch(indices, None, failed)
    outputs = [s.image for s in samples]
    if all(isinstance(o, Tensor) for o in outputs):
        return Batch(indices, collate_images(outputs), failed)
    if all(isinstance(o, (list, tuple)) for o in outputs):
        counts = {len(o) for o in outputs}
        if len(counts) > 1:
            raise ValueError(f"samples have different numbers of views: {sorted(counts)}")
        if not all(isinstance(v, Tensor) for o in outputs for v in o):
            raise TypeError("multi-crop views must be tensors")
        views = [collate_images([o[v] for o in outputs]) for v in range(counts.pop())]
        return Batch(indices, views, failed)
    kinds = sorted({type(o).__name__ for o in outputs})
    raise TypeError(
        f"collate_skip_failed stacks tensors or lists of tensors, got {kinds}; "
        "the transform must end with a tensor conversion"
    )
