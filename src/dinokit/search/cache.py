"""A search index cached next to its embeddings file, rebuilt when the file changes.

``shop.parquet`` gets ``shop.parquet.faiss`` (the FAISS index) and ``shop.parquet.faiss.json``
(the SHA-256 of the embeddings file, the index spec and the FAISS version). The cache is used
only when the digest and the requested spec both match; otherwise the index is rebuilt and
the cache rewritten (atomically: temp file + rename). A folder that cannot be written only
loses the cache, never the search.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .._files import atomic_write, file_sha256
from ..embeddings import Embeddings
from .index import (
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    IndexSpec,
    VectorIndex,
    build_index,
    import_faiss,
    resolve_spec,
)

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the cache sidecar layout."""


def cache_paths(embeddings_file: Path) -> tuple[Path, Path]:
    """``(<file>.faiss, <file>.faiss.json)``: the cached index and its record."""
    return (
        embeddings_file.with_name(embeddings_file.name + ".faiss"),
        embeddings_file.with_name(embeddings_file.name + ".faiss.json"),
    )


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _record(spec: IndexSpec, digest: str, n: int, dim: int) -> dict[str, Any]:
    """What a stored index depends on (search-time settings are not part of it)."""
    return {
        "format": CACHE_FORMAT,
        "digest": digest,
        "build": {"kind": spec.kind, "nlist": spec.nlist, "seed": spec.seed},
        "faiss": import_faiss().__version__,
        "ntotal": n,
        "dim": dim,
    }


def load_cached(
    embeddings_file: Path, spec: IndexSpec, digest: str, n: int, dim: int
) -> VectorIndex | None:
    """The cached index when its record matches ``digest`` and ``spec``, else ``None``."""
    index_path, record_path = cache_paths(embeddings_file)
    record = _read_record(record_path)
    if record is None or not index_path.exists():
        return None
    faiss = import_faiss()
    if any(record.get(key) != value for key, value in _record(spec, digest, n, dim).items()):
        logger.info("%s: embeddings or index options changed; rebuilding the index", index_path)
        return None
    try:
        index = faiss.read_index(str(index_path))
    except RuntimeError as exc:
        logger.warning("%s: unreadable cached index (%s); rebuilding it", index_path, exc)
        return None
    return VectorIndex(index, spec)


def save_cache(embeddings_file: Path, index: VectorIndex, digest: str) -> None:
    """Write the index and its record next to ``embeddings_file`` (warns if it cannot)."""
    faiss = import_faiss()
    index_path, record_path = cache_paths(embeddings_file)
    record = _record(index.spec, digest, index.ntotal, index.dim)
    try:
        atomic_write(index_path, lambda tmp: faiss.write_index(index.index, str(tmp)))
        atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    except OSError as exc:
        logger.warning(
            "%s: cannot cache the index (%s); it is rebuilt on each search", index_path, exc
        )


def index_for_file(
    embeddings_file: str | Path,
    embeddings: Embeddings | None = None,
    *,
    kind: str = "auto",
    nprobe: int = DEFAULT_NPROBE,
    ef_search: int = DEFAULT_EF_SEARCH,
    cache: bool = True,
) -> tuple[Embeddings, VectorIndex]:
    """The embeddings of a file and their index, from the cache when it is current.

    Args:
        embeddings_file: A file written by ``dinokit embed`` / :meth:`Embeddings.save`.
        embeddings: The file's contents when already loaded (skips reading it again).
        kind: Index kind (see :func:`~dinokit.search.index.build_index`).
        nprobe: IVF lists scanned per query (a search-time setting: not part of the cache key).
        ef_search: HNSW candidate list size per query (search-time, likewise).
        cache: Read and write the cache next to the file.

    Returns:
        ``(embeddings, index)``; index row ``i`` is embeddings row ``i``.
    """
    path = Path(embeddings_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such embeddings file; create it with dinokit embed")
    emb = embeddings if embeddings is not None else Embeddings.load(path)
    spec = resolve_spec(len(emb), kind, nprobe=nprobe, ef_search=ef_search)
    if not cache:
        return emb, build_index(
            emb.vectors, spec.kind, nlist=spec.nlist or None, nprobe=nprobe, ef_search=ef_search
        )
    digest = file_sha256(path)
    index = load_cached(path, spec, digest, len(emb), emb.dim)
    if index is None:
        index = build_index(emb.vectors, spec.kind, nlist=spec.nlist or None, seed=spec.seed)
        save_cache(path, index, digest)
    else:
        logger.debug("%s: using the cached %s index", path, spec.kind)
    index.spec = spec  # the search-time settings asked for now
    index.apply_search_params()
    return emb, index
