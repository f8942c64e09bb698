"""Built-in sample images and the sample-data command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dinokit.cli import main
from dinokit.data import list_images
from dinokit.sample_data import PATTERNS, make_sample_images


def test_sample_images_are_a_labelled_folder(tmp_path: Path) -> None:
    make_sample_images(tmp_path, per_class=2, val_per_class=1, size=32, seed=3)
    train = list_images([tmp_path / "train"])
    assert len(train.records) == 2 * len(PATTERNS)
    assert train.labels == sorted(PATTERNS)
    assert len(list_images([tmp_path / "val"]).records) == len(PATTERNS)
    image = Image.open(train.records[0].path)
    assert image.size == (32, 32) and image.mode == "RGB"


def test_same_seed_same_images_and_colour_varies(tmp_path: Path) -> None:
    a = make_sample_images(tmp_path / "a", per_class=3, val_per_class=0, size=32, seed=1)
    b = make_sample_images(tmp_path / "b", per_class=3, val_per_class=0, size=32, seed=1)
    first = sorted((a / "train" / "checker").iterdir())
    assert [p.read_bytes() for p in first] == [
        p.read_bytes() for p in sorted((b / "train" / "checker").iterdir())
    ]
    means = [np.asarray(Image.open(p)).reshape(-1, 3).mean(0) for p in first]
    assert np.ptp(np.stack(means), axis=0).max() > 20  # colour is not fixed per class


def test_command_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    args = ["sample-data", str(tmp_path / "s"), "--per-class", "1", "--val-per-class", "0"]
    assert main(args) == 0
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0
