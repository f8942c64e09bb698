"""Near-duplicate and byte-identical images in an embeddings collection.

``dinokit.duplicates`` is both this package and its main function:
``dinokit.duplicates("shop.parquet", threshold=0.95)`` calls :func:`find_duplicates`;
:func:`calibrate_threshold` chooses the threshold from modified copies of the collection's
own images, embedded with its own model.
"""

from .._callable import make_callable
from .calibration import (
    CopyStats,
    DistinctStats,
    ThresholdCalibration,
    calibrate_threshold,
    choose_threshold,
)
from .copies import COPY_KINDS, CopyKind, make_copy
from .groups import (
    DEFAULT_NEIGHBOURS,
    DEFAULT_THRESHOLD,
    DuplicateGroup,
    DuplicateMember,
    connected_components,
    file_hashes,
    find_duplicates,
)

__all__ = [
    "COPY_KINDS",
    "DEFAULT_NEIGHBOURS",
    "DEFAULT_THRESHOLD",
    "CopyKind",
    "CopyStats",
    "DistinctStats",
    "DuplicateGroup",
    "DuplicateMember",
    "ThresholdCalibration",
    "calibrate_threshold",
    "choose_threshold",
    "connected_components",
    "file_hashes",
    "find_duplicates",
    "make_copy",
]

make_callable(__name__, find_duplicates)
