"""Modified copies of an image: the edits a near-duplicate threshold is meant to survive.

A copy is what a photo becomes when it is re-saved, shrunk or trimmed: a JPEG re-encode at
low quality, a downscale (optionally re-encoded), a centred crop. JPEG copies go through real
encoder bytes and are decoded the way ``dinokit embed`` decodes a JPEG file (draft mode), so
an in-memory copy gives the same vector as the same copy saved and embedded from disk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from ..data import to_rgb
from ..data.io import center_crop, open_image_bytes, rescale

RESAMPLE = Image.Resampling.LANCZOS
"""Filter of the downscales (what image editors and thumbnailers typically use)."""


@dataclass(frozen=True)
class CopyKind:
    """One way of modifying an image.

    Attributes:
        name: Identifier used in records (``jpeg_q30``).
        description: Label for tables (``JPEG q30 copy``).
        scale: Each side is multiplied by this (1 keeps the size).
        crop: Fraction of each side kept by a centred crop (1 keeps everything).
        quality: JPEG quality of a re-encode, or ``None`` for a lossless copy.
        calibrates: Whether the threshold is chosen to keep copies of this kind (the kinds
            ``dinokit duplicates`` promises to catch); the others are only reported.
    """

    name: str
    description: str
    scale: float = 1.0
    crop: float = 1.0
    quality: int | None = None
    calibrates: bool = True

    def __post_init__(self) -> None:
        if not (0.0 < self.scale <= 1.0 and 0.0 < self.crop <= 1.0):
            raise ValueError(f"{self.name}: scale and crop must be in (0, 1]")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"{self.name}: JPEG quality must be in [1, 100], got {self.quality}")


COPY_KINDS: tuple[CopyKind, ...] = (
    CopyKind("jpeg_q30", "JPEG q30 copy", quality=30),
    CopyKind("half", "1/2 downscale", scale=0.5),
    CopyKind("quarter_q50", "1/4 downscale, q50", scale=0.25, quality=50),
    CopyKind("crop90", "90% crop", crop=0.9, calibrates=False),
)
"""The copies made by :func:`~dinokit.duplicates.calibrate_threshold`, in table order."""


def modify(image: Image.Image, kind: CopyKind) -> Image.Image:
    """The lossless part of a copy: centred crop, then downscale.

    Args:
        image: An RGB image.
        kind: What to do.

    Returns:
        A new RGB image of ``round(crop * scale * side)`` pixels per side (at least 1).
    """
    out = image
    if kind.crop < 1.0:
        width, height = (max(1, round(side * kind.crop)) for side in image.size)
        out = center_crop(out, width, height)
    if kind.scale < 1.0:
        out = rescale(out, kind.scale, RESAMPLE)
    return out if out is not image else image.copy()


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG file bytes of ``image`` at ``quality`` (Pillow's default 4:2:0 subsampling)."""
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_copy(image: Image.Image, kind: CopyKind, *, draft_size: int | None = None) -> Image.Image:
    """A modified copy of ``image``, as it reads back from its file.

    Args:
        image: The original, an RGB image.
        kind: The modification.
        draft_size: For JPEG copies, the smallest short side the embedder needs
            (``EvalTransform.draft_size``): decoded as :func:`dinokit.data.open_image`
            decodes a JPEG file, reduced by 1/2, 1/4 or 1/8 while both sides keep it;
            ``None`` decodes at full size.

    Returns:
        The copy's RGB pixels.
    """
    out = modify(image, kind)
    if kind.quality is None:
        return out
    return open_image_bytes(encode_jpeg(out, kind.quality), kind.name, draft_size=draft_size)
