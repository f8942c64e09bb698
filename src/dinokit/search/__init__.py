"""Nearest-neighbour search over embeddings: exact, or with FAISS (cosine similarity)."""

from .._callable import make_callable
from .cache import index_for_file
from .index import KINDS, VectorIndex, build_index, recall_at_k
from .query import Neighbour, SearchResult, embed_query_images, neighbours_of, search
from .vectors import EXACT_LIMIT, neighbours, unit_rows

__all__ = [
    "EXACT_LIMIT",
    "KINDS",
    "Neighbour",
    "SearchResult",
    "VectorIndex",
    "build_index",
    "embed_query_images",
    "index_for_file",
    "neighbours",
    "neighbours_of",
    "recall_at_k",
    "search",
    "unit_rows",
]

make_callable(__name__, search)
