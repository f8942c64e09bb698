"""Images added to a served collection, kept durably next to its embeddings file.

``shop.parquet`` gets a folder ``shop.parquet.added/``:

- ``images/<name>``: each added image file, as uploaded (its suffix from its decoded format);
- ``part-000001.parquet``, ``part-000002.parquet``...: the rows of each add, in the layout of
  ``dinokit embed``'s output and parts (columns ``path``, ``label``, ``embedding``, ``root``;
  the model's fingerprint and the vector width in the schema metadata).

Every file is written to a temporary name, ``fsync``'d and renamed (then the folder is
``fsync``'d), and an add is answered only after its part is in place: a server killed at any
moment, SIGKILL included, restarts with every add it acknowledged and never reads half a part.
The embeddings file itself is never rewritten, so its cached index stays valid; the added rows
are appended to the index when the collection loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._files import atomic_path
from ..embeddings import make_table, schema, vectors_of

logger = logging.getLogger(__name__)

STORE_SUFFIX = ".added"
"""``<embeddings file><STORE_SUFFIX>/`` holds the added images and their rows."""

_PART = re.compile(r"^part-(\d{6})\.parquet$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
             "TIFF": ".tif"}  # fmt: skip


class AddedImagesError(ValueError):
    """The added rows next to an embeddings file do not fit it (another model or width)."""


def safe_stem(name: str) -> str:
    """A file stem made of ``[A-Za-z0-9._-]`` from an uploaded file name (never empty)."""
    stem = Path(name.replace("\\", "/")).stem
    cleaned = _UNSAFE.sub("_", stem).strip("._")[:80]
    return cleaned or "image"


class AddedStore:
    """The durable record of the images added to one embeddings file.

    Args:
        embeddings_file: The served embeddings file.
        fingerprint: Fingerprint of the model of its vectors (checked against each part).
        dim: Vector width D.
    """

    def __init__(self, embeddings_file: Path, *, fingerprint: str | None, dim: int) -> None:
        self.folder = embeddings_file.with_name(embeddings_file.name + STORE_SUFFIX)
        self.images = self.folder / "images"
        self.fingerprint = fingerprint
        self.dim = dim
        self._next = 1

    def _parts(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if _PART.match(p.name))

    def load(self) -> tuple[list[str], list[str | None], NDArray[np.float32]]:
        """Every added row, in the order they were added.

        Returns:
            (M,) paths relative to :attr:`images`, (M,) labels, (M, D) float32 vectors.

        Raises:
            AddedImagesError: A part was made with another model or has another width.
        """
        import pyarrow.parquet as pq

        # A server killed while writing leaves only temporary files; they hold no answered add.
        if self.folder.is_dir():
            for stale in self.folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            for stale in self.images.glob(".*.tmp") if self.images.is_dir() else []:
                stale.unlink(missing_ok=True)
        paths: list[str] = []
        labels: list[str | None] = []
        blocks: list[NDArray[np.float32]] = [np.zeros((0, self.dim), dtype=np.float32)]
        parts = self._parts()
        for part in parts:
            table = pq.read_table(part)
            meta = json.loads((table.schema.metadata or {}).get(b"dinokit", b"{}"))
            if meta.get("dim") != self.dim or meta.get("fingerprint") != self.fingerprint:
                raise AddedImagesError(
                    f"{part}: added with another model (fingerprint {meta.get('fingerprint')}, "
                    f"{meta.get('dim')}-d) than the embeddings ({self.fingerprint}, "
                    f"{self.dim}-d); move {self.folder} away to serve without those images"
                )
            paths += table.column("path").to_pylist()
            labels += table.column("label").to_pylist()
            blocks.append(vectors_of(table))
        if parts:
            self._next = int(_PART.match(parts[-1].name).group(1)) + 1  # type: ignore[union-attr]
            logger.info("%s: %d added images in %d parts", self.folder, len(paths), len(parts))
        return paths, labels, np.concatenate(blocks)

    def save_image(self, data: bytes, name: str, image_format: str | None) -> str:
        """Write an uploaded image durably under :attr:`images`.

        Args:
            data: The file's bytes.
            name: The uploaded file name (only its stem is kept, made safe).
            image_format: PIL's name of its format (picks the suffix).

        Returns:
            Its path relative to :attr:`images`. The same bytes under the same name give the
            same path (an add retried after a crash does not duplicate the file).
        """
        suffix = _SUFFIXES.get(image_format or "", ".img")
        stem = safe_stem(name)
        relative = stem + suffix
        target = self.images / relative
        if target.exists() and target.read_bytes() != data:
            digest = hashlib.sha256(data).hexdigest()[:10]
            relative = f"{stem}-{digest}{suffix}"
            target = self.images / relative
        if not target.exists():
            with atomic_path(target, durable=True) as tmp:
                tmp.write_bytes(data)
        return relative

    def append(
        self, paths: list[str], labels: list[str | None], vectors: NDArray[np.float32]
    ) -> Path:
        """Write the rows of one add as the next part, durably.

        Args:
            paths: (M,) paths relative to :attr:`images`.
            labels: (M,) labels or ``None``.
            vectors: (M, D) float32.

        Returns:
            The part written.
        """
        import pyarrow.parquet as pq

        meta: dict[str, Any] = {"dim": self.dim, "fingerprint": self.fingerprint}
        target_schema = schema(self.dim, patch_tokens=False, metadata=meta)
        table = make_table(paths, labels, vectors, [0] * len(paths)).cast(target_schema)
        part = self.folder / f"part-{self._next:06d}.parquet"
        with atomic_path(part, durable=True) as tmp:
            pq.write_table(table, tmp)
        self._next += 1
        return part
