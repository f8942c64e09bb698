"""Nearest-neighbour search over embeddings with FAISS (cosine similarity)."""

from ._callable import make_callable
from .cache import index_for_file
from .index import KINDS, VectorIndex, build_index, exact_search, recall_at_k
from .query import Neighbour, SearchResult, embed_query_images, neighbours_of, search

__all__ = [
    "KINDS",
    "Neighbour",
    "SearchResult",
    "VectorIndex",
    "build_index",
    "embed_query_images",
    "exact_search",
    "index_for_file",
    "neighbours_of",
    "recall_at_k",
    "search",
]

make_callable(__name__, search)
