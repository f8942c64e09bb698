from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dinokit.data import (
    EvalTransform,
    Failed,
    ImageDataset,
    Sample,
    collate_skip_failed,
    list_images,
)

from ._helpers import write_jpeg

TRANSFORM = EvalTransform("resize", 16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


class TwoViews:
    """A tiny multi-crop stand-in: one 16 px and one 8 px view."""

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        return [TRANSFORM(image), TRANSFORM(image)[:, :8, :8]]


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for i in range(7):
        write_jpeg(root / f"good{i}.jpg", 20 + i, 18, seed=i)
    (root / "bad_empty.jpg").write_bytes(b"")
    full = write_jpeg(tmp_path / "whole.jpg", 64, 64).read_bytes()
    (root / "bad_truncated.jpg").write_bytes(full[: len(full) // 2])
    return root


def test_loader_with_workers_skips_corrupt_files(tmp_path: Path) -> None:
    records = list_images([_folder(tmp_path)]).records
    dataset = ImageDataset(records, TRANSFORM, draft_size=TRANSFORM.draft_size)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_skip_failed)
    seen: list[int] = []
    failures: list[Failed] = []
    for batch in loader:
        failures.extend(batch.failed)
        if batch.images is None:
            continue
        assert isinstance(batch.images, torch.Tensor)
        assert batch.images.shape == (len(batch.indices), 3, 16, 16)
        seen.extend(batch.indices.tolist())
    good = {i for i, r in enumerate(records) if r.path.name.startswith("good")}
    assert sorted(seen) == sorted(good)
    reasons = {Path(f.path).name: f.reason for f in failures}
    assert set(reasons) == {"bad_empty.jpg", "bad_truncated.jpg"}
    assert "empty" in reasons["bad_empty.jpg"]
    assert "truncated" in reasons["bad_truncated.jpg"]
    assert all(records[f.index].path == Path(f.path) for f in failures)


def test_multi_crop_views_are_stacked_per_view(tmp_path: Path) -> None:
    paths = [write_jpeg(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    dataset = ImageDataset(paths, TwoViews())
    loader = DataLoader(dataset, batch_size=3, num_workers=0, collate_fn=collate_skip_failed)
    batch = next(iter(loader))
    assert isinstance(batch.images, list)
    assert [tuple(v.shape) for v in batch.images] == [(3, 3, 16, 16), (3, 3, 8, 8)]
    assert batch.indices.tolist() == [0, 1, 2] and batch.failed == []


def test_item_access_and_all_failed_batch(tmp_path: Path) -> None:
    good = write_jpeg(tmp_path / "café ok.jpg")  # non-ASCII and space survive packing
    (tmp_path / "no.jpg").write_text("not an image")
    dataset = ImageDataset([str(good), tmp_path / "no.jpg"], TRANSFORM)
    assert len(dataset) == 2 and dataset.path(-1) == str(tmp_path / "no.jpg")
    sample, failed = dataset[0], dataset[-1]
    assert isinstance(sample, Sample) and sample.index == 0
    assert isinstance(failed, Failed) and failed.index == 1 and "not an image" in failed.reason
    with pytest.raises(IndexError):
        dataset[2]
    batch = collate_skip_failed([failed])
    assert batch.images is None and batch.indices.shape == (0,) and batch.failed == [failed]
    assert pickle.loads(pickle.dumps(dataset)).path(1) == dataset.path(1)


def test_collate_rejects_non_tensor_outputs() -> None:
    with pytest.raises(TypeError, match="tensor"):
        collate_skip_failed([Sample(0, Image.new("RGB", (2, 2)))])
    with pytest.raises(ValueError, match="numbers of views"):
        collate_skip_failed([Sample(0, [torch.zeros(3, 2, 2)]), Sample(1, [])])
