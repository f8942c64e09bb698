"""Listing the images of a collection: folders, list files and single image files.

Labelled folders follow the ``root/<class>/<image>`` layout of torchvision's ``ImageFolder``,
with one trap removed: images at the root of a labelled folder are kept (with no label)
instead of being silently dropped, as lightly's ``ImageFolder`` path does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
"""Image file extensions recognised when listing (lower case; matching ignores case)."""

LIST_EXTENSIONS: frozenset[str] = frozenset({".txt", ".lst"})
"""Extensions of list files: one image path per line."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of a collection.

    Attributes:
        path: Absolute, normalised path of the image file (symlinks not resolved).
        relpath: Path relative to ``root``, POSIX style (``"cats/a.jpg"``); ``root / relpath``
            names the same file as ``path``. For list-file entries outside the list file's
            folder it starts with ``..``.
        label: Name of the first-level subfolder of a labelled folder, else ``None``.
        root: The input this image came from: the folder given, the folder of the list file,
            or the parent folder of a single image file.
    """

    path: Path
    relpath: str
    label: str | None
    root: Path


@dataclass(frozen=True)
class SkippedImage:
    """An image that was named but cannot be used, and why.

    Attributes:
        path: The path as found (absolute when it could be resolved).
        reason: A short, human-readable reason (``"listed in a.txt but not found"``).
    """

    path: str
    reason: str


@dataclass(frozen=True)
class ImageList:
    """The result of :func:`list_images`.

    Attributes:
        records: The usable images, in a deterministic order (inputs in the order given, each
            folder sorted by path components).
        skipped: Entries that were named in a list file but cannot be used.
    """

    records: list[ImageRecord]
    skipped: list[SkippedImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    @property
    def labels(self) -> list[str]:
        """Sorted distinct labels of the records (empty for an unlabelled collection)."""
        return sorted({r.label for r in self.records if r.label is not None})


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` has an image extension (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def list_images(inputs: Sequence[str | Path] | str | Path) -> ImageList:
    """Lists the images of one or several inputs.

    Each input is one of:

    * a folder, walked recursively (symlinked folders followed once), in a deterministic
      order (sorted by path components). Files and folders whose name starts with ``.`` are
      ignored, as are files without an image extension (see ``IMAGE_EXTENSIONS``).
    * a list file (``.txt`` / ``.lst``): one image path per line; relative paths are resolved
      against the list file's folder; blank lines and lines starting with ``#`` are ignored.
      Listed paths that are missing, are folders or lack an image extension are returned in
      ``skipped`` instead of stopping the listing. Listed files are used even when hidden.
    * a single image file.

    Labelling rule, per folder input ``root``: the folder is *labelled* iff at least one of its
    non-hidden first-level subfolders contains an image (directly or deeper). Then every image
    under ``root/<sub>/...`` gets ``label = "<sub>"`` (the first path component under
    ``root``) and images directly in ``root`` are still included with ``label=None``.
    A folder with images only at its root is unlabelled (all labels ``None``). Images from
    list files and single image files have ``label=None``.

    The same file reached through several inputs (or through symlinks) is listed once, at its
    first occurrence; the real path (symlinks resolved) identifies a file.

    Args:
        inputs: Folders, list files and image files. A single ``str``/``Path`` is accepted as
            one input.

    Returns:
        The records and the skipped entries.

    Raises:
        FileNotFoundError: An input does not exist.
        ValueError: No inputs, an input file that is neither an image nor a list file, or no
            image found at all.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if len(inputs) == 0:
        raise ValueError("list_images: no inputs given; pass image folders, list files or images")
    records: list[ImageRecord] = []
    skipped: list[SkippedImage] = []
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"input not found: {item!s} (expected a folder of images, "
                "a list file (.txt/.lst) or an image file)"
            )
        if path.is_dir():
            records.extend(_list_folder(path))
        elif path.suffix.lower() in LIST_EXTENSIONS:
            found, missing = _list_file(path)
            records.extend(found)
            skipped.extend(missing)
        elif is_image_file(path):
            absolute = _absolute(path)
            records.append(ImageRecord(absolute, absolute.name, None, absolute.parent))
        else:
            raise ValueError(
                f"input {item!s} is neither a folder, a list file (.txt/.lst)"
                f" nor an image file ({' '.join(sorted(IMAGE_EXTENSIONS))})"
            )
    records = _deduplicate(records)
    if not records:
        shown = ", ".join(str(i) for i in inputs)
        extra = (
            f" ({len(skipped)} listed entries skipped, first: {skipped[0].reason})"
            if skipped
            else ""
        )
        raise ValueError(
            f"no images found in {shown}{extra}. Pass a folder containing image files "
            f"({' '.join(sorted(IMAGE_EXTENSIONS))}; hidden files are ignored), "
            "a list file (.txt/.lst) with one image path per line, or image files."
        )
    return ImageList(records, skipped)


def _absolute(path: Path) -> Path:
    """Absolute, normalised (``..`` collapsed) path without resolving symlinks."""
    return Path(os.path.abspath(path))


def _walk_images(root: Path) -> list[tuple[str, ...]]:
    """Relative path components of every non-hidden image under ``root``, sorted."""
    found: list[tuple[str, ...]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop, or a folder reached twice through links
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root).parts
        found.extend(
            (*rel, name) for name in filenames if not name.startswith(".") and is_image_file(name)
        )
    found.sort()
    return found


def _list_folder(folder: Path) -> list[ImageRecord]:
    root = _absolute(folder)
    parts_list = _walk_images(root)
    labelled = any(len(parts) > 1 for parts in parts_list)
    if labelled and any(len(parts) == 1 for parts in parts_list):
        logger.info(
            "%s is labelled by its subfolders; images at its root are kept unlabelled", root
        )
    return [
        ImageRecord(
            path=root.joinpath(*parts),
            relpath="/".join(parts),
            label=parts[0] if labelled and len(parts) > 1 else None,
            root=root,
        )
        for parts in parts_list
    ]


def _list_file(list_path: Path) -> tuple[list[ImageRecord], list[SkippedImage]]:
    root = _absolute(list_path).parent
    records: list[ImageRecord] = []
    skipped: list[SkippedImage] = []
    with open(list_path, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path = _absolute(root / Path(line).expanduser())
        where = f"{list_path.name}:{number}"
        if not path.exists():
            skipped.append(SkippedImage(str(path), f"listed in {where} but not found"))
        elif path.is_dir():
            skipped.append(SkippedImage(str(path), f"listed in {where} but is a folder"))
        elif not is_image_file(path):
            skipped.append(SkippedImage(str(path), f"listed in {where} but not an image file"))
        else:
            relpath = Path(os.path.relpath(path, root)).as_posix()
            records.append(ImageRecord(path, relpath, None, root))
    return records, skipped


def _deduplicate(records: list[ImageRecord]) -> list[ImageRecord]:
    seen: set[str] = set()
    unique: list[ImageRecord] = []
    for record in records:
        key = os.path.realpath(record.path)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    if len(unique) < len(records):
        logger.info(
            "%d images reached through several inputs listed once", len(records) - len(unique)
        )
    return unique
