"""Generated image folders for the embedding tests."""

from __future__ import annotations

from pathlib import Path

from tests.data._helpers import write_jpeg


def labelled_folder(
    root: Path, *, per_class: int = 3, classes: tuple[str, ...] = ("a", "b")
) -> Path:
    """``root/<class>/<i>.jpg`` images plus one unlabelled image at the root."""
    seed = 0
    for name in classes:
        for i in range(per_class):
            seed += 1
            write_jpeg(root / name / f"{i}.jpg", 40, 32, seed=seed)
    write_jpeg(root / "loose.jpg", 30, 50, seed=99)
    return root


def flat_folder(root: Path, n: int = 4, *, start: int = 0) -> list[Path]:
    """``n`` unlabelled JPEGs ``img<k>.jpg`` directly in ``root``."""
    return [
        write_jpeg(root / f"img{k:03d}.jpg", 36 + k, 28, seed=100 + k)
        for k in range(start, start + n)
    ]
