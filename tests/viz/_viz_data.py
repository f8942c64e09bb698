"""Generated image folders with matching embeddings, for the map and report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dinokit.embeddings import Embeddings


def make_embeddings(
    root: Path,
    *,
    classes: list[str | None],
    per_class: int = 6,
    dim: int = 16,
    size: int = 40,
    seed: int = 0,
) -> Embeddings:
    """Write ``per_class`` JPEGs per class under ``root`` and matching clustered vectors.

    A ``None`` class puts its images at the root (unlabelled). Vectors are a random unit
    centre per class plus small noise, L2-normalised, so neighbours share a class.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(classes), dim))
    paths: list[str] = []
    labels: list[str | None] = []
    vectors = []
    for c, name in enumerate(classes):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        for i in range(per_class):
            rel = f"{name}/img_{i:04d}.jpg" if name is not None else f"img_{c}_{i:04d}.jpg"
            file = root / rel
            file.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (size + i % 3, size), colour).save(file, quality=80)
            paths.append(rel)
            labels.append(name)
            vectors.append(centres[c] + 0.1 * rng.normal(size=dim))
    matrix = np.asarray(vectors, dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    metadata = {
        "model": {"model": "vit_test", "architecture": "vit_test", "branch": "teacher"},
        "fingerprint": "0123abcd",
        "preprocess": "center-crop",
        "size": 32,
        "feature": "cls",
        "branch": "teacher",
        "normalize": True,
        "roots": [str(root)],
        "skipped": [{"path": "broken.jpg", "reason": "truncated or corrupt data"}],
    }
    return Embeddings(paths=paths, labels=labels, vectors=matrix, metadata=metadata)


def write_assignments(path: Path, emb: Embeddings, cluster_of: list[int]) -> Path:
    """An ``assignments.csv`` (``path,cluster,distance``) with the given cluster per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["path,cluster,distance"]
    lines += [
        f"{p},{c},{0.01 * i:.4f}"
        for i, (p, c) in enumerate(zip(emb.paths, cluster_of, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
