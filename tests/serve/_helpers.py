"""A small served collection: generated images embedded with the tiny ``vit_test`` backbone."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dinokit.embed import embed

CLASSES = ("red", "green", "blue")
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def picture(
    colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (72, 64)
) -> Image.Image:
    """A colour field with a little noise, so images of one colour are near each other."""
    rng = np.random.default_rng(seed)
    base = np.asarray(colour, dtype=np.int16)[None, None, :]
    noise = rng.integers(-25, 26, (size[1], size[0], 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as a JPEG."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclass
class Served:
    """A folder of images, its embeddings file, a clusters folder and a duplicates CSV."""

    images: Path
    embeddings: Path
    clusters: Path
    duplicates: Path


def make_collection(root: Path, per_class: int = 4) -> Served:
    """``per_class`` images per colour under ``root/images/<colour>/``, embedded in fp32."""
    images = root / "images"
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            path = images / name / f"{name}_{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            picture(COLOURS[name], seed=10 * c + i).save(path, quality=90)
    out = root / "emb.parquet"
    emb = embed(images, model="vit_test", weights="none", workers=0, batch_size=8,
                precision="fp32", out=out)  # fmt: skip
    clusters = root / "clusters"
    clusters.mkdir()
    rows = [f"{p},{['red', 'green', 'blue'].index(str(lab))},0.1\n"
            for p, lab in zip(emb.paths, emb.labels, strict=True)]  # fmt: skip
    (clusters / "assignments.csv").write_text("path,cluster,distance\n" + "".join(rows))
    duplicates = root / "groups.csv"
    duplicates.write_text("group,path,score\n0,red/red_0.jpg,0.99\n0,red/red_1.jpg,0.98\n")
    return Served(images, out, clusters, duplicates)
