"""Embeddings and their files, with no model behind them.

:class:`Embeddings` (vectors, paths, labels, metadata) with its one reader
(:func:`read_tables`, :func:`read_metadata`) and one writer (:func:`write_tables`) of every
format (Parquet, ``.npy`` + sidecars, lightly's CSV), the row tables both work on, and the
parts (:class:`WorkDir`) an interrupted ``embed`` resumes from. Making embeddings from images
is :mod:`dinokit.embed`.
"""

from ._container import Embeddings
from ._formats import (
    FORMATS,
    EmbeddingsFileError,
    check_format,
    read_metadata,
    read_tables,
    sidecar,
    write_skipped,
    write_tables,
)
from ._parts import WorkDir
from ._tables import METADATA_KEY, make_table, metadata_json, schema, vectors_of

__all__ = [
    "FORMATS",
    "METADATA_KEY",
    "Embeddings",
    "EmbeddingsFileError",
    "WorkDir",
    "check_format",
    "make_table",
    "metadata_json",
    "read_metadata",
    "read_tables",
    "schema",
    "sidecar",
    "vectors_of",
    "write_skipped",
    "write_tables",
]
