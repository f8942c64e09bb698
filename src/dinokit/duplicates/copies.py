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
from ..data.io import apply_draft

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
    width, height = image.size
    out = image
    if kind.crop < 1.0:
        w, h = max(1, round(width * kind.crop)), max(1, round(height * kind.crop))
        left, top = (width - w) // 2, (height - h) // 2
        out = out.crop((left, top, left + w, top + h))
    if kind.scale < 1.0:
        w, h = max(1, round(out.width * kind.scale)), max(1, round(out.height * kind.scale))
        out = out.resize((w, h), RESAMPLE)
    return out if out is not image else image.copy()


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG file bytes of ``image`` at ``quality`` (Pillow's default 4:2:0 subsampling)."""
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes, *, draft_size: int | None = None) -> Image.Image:
    """Decodes JPEG bytes to RGB as :func:`dinokit.data.open_image` decodes a JPEG file.

    Args:
        data: JPEG file bytes.
        draft_size: Smallest short side needed: the decoder may downscale by 1/2, 1/4 or 1/8
            while both sides stay at least this (``EvalTransform.draft_size``); ``None``
            decodes at full size.
    """
    with Image.open(io.BytesIO(data)) as opened:
        if draft_size is not None:
            apply_draft(opened, draft_size)
        opened.load()
        return to_rgb(opened)


def make_copy(image: Image.Image, kind: CopyKind, *, draft_size: int | None = None) -> Image.Image:
    """A modified copy of ``image``, as it reads back from its file.

    Args:
        image: The original, an RGB image.
        kind: The modification.
        draft_size: For JPEG copies, the ``draft_size`` used to decode them (see
            :func:`decode_jpeg`).

    Returns:
        The copy's RGB pixels.
    """
    out = modify(image, kind)
    if kind.quality is None:
        return out
    return decode_jpeg(encode_jpeg(out, kind.quality), draft_size=draft_size)
