"""Writing files so that a reader never sees a partial one.

Every output of dinokit (models, checkpoints, embeddings, indexes, reports, configs) is
written to a temporary file in the destination folder and renamed into place: a crash or a
Ctrl-C leaves either the old file or the new one, never half of one. Files are compared by
their SHA-256 (:func:`file_sha256`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike


def default_mode(*, folder: bool = False) -> int:
    """Permissions of a new file (or folder) under the process umask (temp files get 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed to ``path`` when the block succeeds.

    Args:
        path: The final file; its folder is created when missing.
        durable: Also ``fsync`` the file and its folder, so the new file survives a power
            loss once the block has returned (checkpoints).

    Yields:
        The temporary file to write (it exists, empty). On any exception, Ctrl-C included,
        it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        tmp.chmod(default_mode())
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def _fsync(target: Path) -> None:
    """Flush a file (or, on POSIX, a folder's entries) to disk; a no-op where not possible."""
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_npy(path: str | Path, array: ArrayLike) -> Path:
    """``numpy.save`` atomically, to exactly ``path`` (no ``.npy`` appended)."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array)
    return Path(path)


def file_sha256(path: str | Path, *, block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (memory flat in the file size)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
