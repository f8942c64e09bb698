"""What the server does, without HTTP: embed uploads through the micro-batcher, search the
collection, add images, make thumbnails, list clusters and duplicate groups.

The model is the one recorded in the embeddings file, rebuilt offline
(:meth:`dinokit.embed.Embedder.from_metadata`), so an uploaded image is embedded exactly as
the indexed images were. When it cannot be rebuilt the server still answers everything but
uploads and adds, which say why.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor

from ..data.io import ImageReadError, open_image_bytes
from ..data.thumbnails import Thumbnail, encode_thumbnail
from ..embed import Embedder
from ..viz.inputs import Clusters, DuplicateGroup, read_clusters, read_duplicate_groups
from ._memory import release_free_memory
from .batcher import MicroBatcher
from .collection import Collection, UnknownImageError
from .config import ServeConfig

logger = logging.getLogger(__name__)

RECIPE_KEYS = ("model", "fingerprint", "preprocess", "size", "transform", "feature", "branch",
               "normalize", "dim", "precision", "dinokit_version", "count")  # fmt: skip
"""Metadata entries the model endpoint shows (not the input roots: they are server paths)."""

THUMBNAIL_CACHE = 2048
"""Thumbnails kept in memory (a few KiB each)."""


class ModelUnavailableError(RuntimeError):
    """The recorded model could not be rebuilt; uploads cannot be embedded."""


@dataclass(frozen=True)
class Upload:
    """One uploaded image file.

    Attributes:
        name: Its file name as sent.
        data: Its bytes.
        label: A label to store with it (adds only).
    """

    name: str
    data: bytes
    label: str | None = None


class SearchService:
    """The served collection, its model and the optional cluster and duplicate files.

    Args:
        config: The server settings.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.collection = Collection(config.embeddings, index=config.index)
        self.embedder: Embedder | None = None
        self.model_error: str | None = None
        try:
            self.embedder = Embedder.from_metadata(
                self.collection.metadata, precision=config.precision, device=config.device
            )
        except (ValueError, RuntimeError, OSError) as exc:
            self.model_error = " ".join(str(exc).split())
            logger.warning("uploads are disabled: %s", self.model_error)
        self.batcher: MicroBatcher | None = None
        if self.embedder is not None:
            self.batcher = MicroBatcher(
                self._forward,
                max_batch=config.max_batch,
                max_wait_s=config.max_wait_ms / 1000,
                on_idle=release_free_memory,
            )
        base = self.collection.base
        self.clusters: Clusters | None = (
            None if config.clusters is None else read_clusters(config.clusters, base)
        )
        self.duplicates: list[DuplicateGroup] = (
            [] if config.duplicates is None else read_duplicate_groups(config.duplicates, base)
        )
        self._thumbs: OrderedDict[tuple[int, int], Thumbnail] = OrderedDict()
        self._thumbs_lock = threading.Lock()

    def close(self) -> None:
        """Stop the model worker."""
        if self.batcher is not None:
            self.batcher.close()

    # ============ the model ============

    def _forward(self, images: Tensor) -> Tensor:
        assert self.embedder is not None
        vectors, _ = self.embedder.embed_tensor(images)
        return vectors

    def _require_model(self) -> Embedder:
        if self.embedder is None:
            raise ModelUnavailableError(f"image uploads are unavailable: {self.model_error}")
        return self.embedder

    def preprocess(self, upload: Upload) -> Tensor:
        """Decode an upload and preprocess it as the indexed images were.

        Returns:
            (3, H, W) float32.

        Raises:
            ImageReadError: Not an image, empty, truncated, too large (decompression bomb).
            ModelUnavailableError: No model to embed with.
        """
        transform = self._require_model().transform
        image = open_image_bytes(upload.data, upload.name, draft_size=transform.draft_size)
        return transform(image)

    def submit(self, image: Tensor) -> Future[Tensor]:
        """Queue a preprocessed image for the next batched forward pass; its (D,) vector."""
        self._require_model()
        assert self.batcher is not None
        return self.batcher.submit(image)

    # ============ searching and adding ============

    def search(
        self, queries: NDArray[np.floating[Any]], k: int, skips: list[int | None] | None = None
    ) -> list[list[dict[str, Any]]]:
        """JSON-ready hits (``rank``, ``score``, ``id``, ``path``, ``label``) of each query."""
        found = self.collection.search(queries, k, skips)
        return [
            [
                {"rank": n.rank, "score": n.score, "id": n.row, "path": n.path, "label": n.label}
                for n in hits
            ]
            for hits in found
        ]

    def add(self, uploads: list[Upload]) -> list[int]:
        """Embed uploaded images and add them to the collection durably (blocking).

        Returns:
            Their ids, in order.

        Raises:
            ImageReadError: One of them is not a usable image (nothing is added then).
        """
        tensors = [self.preprocess(upload) for upload in uploads]
        formats = [_format_of(upload.data) for upload in uploads]
        futures = [self.submit(t) for t in tensors]
        vectors = np.stack([f.result().numpy() for f in futures]).astype(np.float32)
        return self.collection.add(
            [(u.data, u.name, fmt) for u, fmt in zip(uploads, formats, strict=True)],
            [u.label for u in uploads],
            vectors,
        )

    # ============ pictures ============

    def thumbnail(self, row: int, size: int) -> Thumbnail:
        """A JPEG thumbnail of an image id fitting ``size`` x ``size`` (cached).

        Raises:
            UnknownImageError, PermissionError, FileNotFoundError: see
                :meth:`Collection.file_of`.
        """
        key = (row, size)
        with self._thumbs_lock:
            cached = self._thumbs.get(key)
            if cached is not None:
                self._thumbs.move_to_end(key)
                return cached
        thumb = encode_thumbnail(self.collection.file_of(row), size)
        if thumb.data is not None:
            with self._thumbs_lock:
                self._thumbs[key] = thumb
                while len(self._thumbs) > THUMBNAIL_CACHE:
                    self._thumbs.popitem(last=False)
        return thumb

    # ============ what the model and the browse views show ============

    def model_info(self) -> dict[str, Any]:
        """The model record and the embedding recipe."""
        meta = self.collection.metadata
        return {
            **{key: meta[key] for key in RECIPE_KEYS if key in meta},
            "available": self.embedder is not None,
            "error": self.model_error,
        }

    def cluster_list(self, preview: int) -> list[dict[str, Any]]:
        """Each cluster's id, size and first ``preview`` members (closest to the centre)."""
        if self.clusters is None:
            return []
        ids = self.clusters.ids
        out = []
        for cluster in np.unique(ids[ids >= 0]).tolist():
            members = self.clusters.members(int(cluster))
            out.append(
                {
                    "cluster": int(cluster),
                    "size": len(members),
                    "preview": [int(r) for r in members[:preview]],
                }
            )
        return sorted(out, key=lambda c: (-c["size"], c["cluster"]))

    def cluster_members(self, cluster: int, offset: int, limit: int) -> dict[str, Any]:
        """Members of one cluster, closest to its centre first.

        Raises:
            UnknownImageError: No such cluster (or no clusters given).
        """
        if self.clusters is None or not (self.clusters.ids == cluster).any():
            raise UnknownImageError(f"no cluster {cluster}")
        members = self.clusters.members(cluster)
        page = [self.collection.info(int(r)) for r in members[offset : offset + limit]]
        return {"cluster": cluster, "size": len(members), "offset": offset, "images": page}

    def duplicate_groups(self, offset: int, limit: int) -> dict[str, Any]:
        """Duplicate groups, largest first, with their members' ids and scores."""
        groups = [
            {
                "group": g.name,
                "kind": g.kind,
                "size": g.size,
                "members": [
                    {"id": row, "score": None if np.isnan(score) else score}
                    for row, score in zip(g.rows, g.scores, strict=True)
                ],
                "missing": len(g.missing),
            }
            for g in self.duplicates[offset : offset + limit]
        ]
        return {"total": len(self.duplicates), "offset": offset, "groups": groups}

    def health(self) -> dict[str, Any]:
        """Liveness and counts."""
        stats = self.batcher.stats if self.batcher is not None else None
        return {
            "status": "ok",
            "images": len(self.collection),
            "added": self.collection.added_count,
            "model": self.embedder is not None,
            "batches": 0 if stats is None else stats.batches,
            "embedded": 0 if stats is None else stats.items,
            "clusters": self.clusters is not None,
            "duplicates": len(self.duplicates),
        }


def _format_of(data: bytes) -> str | None:
    """PIL's name of an image's format (the header only)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return str(image.format) if image.format else None
    except Exception:  # already decoded once by preprocess; this only names the suffix
        return None


__all__ = ["ImageReadError", "ModelUnavailableError", "SearchService", "Upload"]
