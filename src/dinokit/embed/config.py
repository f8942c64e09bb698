"""What an ``embed`` run is asked to do, and what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.preprocess import MODES
from ..runtime.precision import PRECISIONS
from .embeddings import FORMATS
from .pooling import check_feature


@dataclass
class EmbedConfig:
    """The options of ``dinokit embed`` / :func:`dinokit.embed`.

    Attributes:
        inputs: Folders (recursive; labelled by first-level subfolders), list files
            (``.txt``/``.lst``, one path per line) and image files.
        model: Registered name, ``timm:<name>``, run folder or weights file.
        weights: With a name: ``None`` (official), ``"none"`` (seeded random init) or a file.
        branch: ``teacher`` or ``student``.
        preprocess: ``center-crop``, ``resize``, ``letterbox``, ``native`` (default: the
            model's own).
        size: Input size in pixels (default: the model's own).
        feature: ``cls``, ``mean``, ``cls+mean`` or ``last4``.
        normalize: L2-normalise the vectors.
        patch_tokens: Also store each image's patch tokens (Parquet output only).
        batch_size: Images per forward pass.
        workers: Decoding processes (``None``: all cores but one, at most 8).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        out: ``.parquet``, ``.npy`` or ``.csv`` file; ``None`` keeps the result in memory.
        overwrite: Replace an existing output made differently (or discard an interrupted
            run with other options) instead of refusing.
        chunk_rows: Rows per Parquet part written while running (memory stays flat).
        progress: A bar with the time left on a terminal (log lines elsewhere); ``False``:
            log lines only.
    """

    inputs: list[str | Path]
    model: str | Path
    weights: str | Path | None = None
    branch: str = "teacher"
    preprocess: str | None = None
    size: int | None = None
    feature: str = "cls"
    normalize: bool = True
    patch_tokens: bool = False
    batch_size: int = 64
    workers: int | None = None
    precision: str = "auto"
    device: str = "auto"
    out: str | Path | None = None
    overwrite: bool = False
    chunk_rows: int = 2048
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("no inputs: pass image folders, list files or image files")
        check_feature(self.feature)
        if self.preprocess is not None and self.preprocess not in MODES:
            raise ValueError(f"unknown preprocessing {self.preprocess!r}; choose one of {MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if self.batch_size < 1 or self.chunk_rows < 1:
            raise ValueError("batch size and chunk rows must be >= 1")
        if self.out is not None:
            suffix = Path(self.out).suffix.lower()
            if suffix not in FORMATS:
                raise ValueError(
                    f"{self.out}: unknown output format {suffix or '(no suffix)'!r}; "
                    f"use one of {', '.join(FORMATS)}"
                )
            if self.patch_tokens and suffix != ".parquet":
                raise ValueError(f"{self.out}: patch tokens are written to .parquet files only")
        elif self.patch_tokens:
            raise ValueError("patch tokens are written to a file: pass out=... .parquet")


@dataclass
class EmbedSummary:
    """What a run wrote.

    Attributes:
        out: The output file (``None`` in memory).
        total: Images in the output.
        new: Images embedded by this run.
        reused: Images taken from the existing output or an interrupted run.
        dropped: Rows removed because their image is no longer in the inputs.
        skipped: Unreadable or unusable images (``{"path", "reason"}``).
        skipped_file: The ``.skipped.tsv`` file next to the output, if any.
        up_to_date: The output already held every image: nothing was written.
        metadata: The output's metadata.
    """

    out: Path | None
    total: int
    new: int
    reused: int
    dropped: int
    skipped: list[dict[str, str]]
    skipped_file: Path | None
    up_to_date: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """A one-line report for the command line."""
        meta = self.metadata
        recipe = (
            f"{meta.get('feature')} of {meta.get('model', {}).get('architecture')}, "
            f"{meta.get('preprocess')} {meta.get('size')}, dim {meta.get('dim')}"
        )
        where = f" -> {self.out}" if self.out else ""
        if self.up_to_date:
            head = f"{self.total} images, already up to date{where}"
        else:
            parts = [f"{self.total} images{where}", f"{self.new} embedded now"]
            if self.reused:
                parts.append(f"{self.reused} kept from before")
            if self.dropped:
                parts.append(f"{self.dropped} no longer in the inputs removed")
            head = ", ".join(parts)
        line = f"{head} ({recipe})"
        if self.skipped:
            shown = f": see {self.skipped_file}" if self.skipped_file else ""
            line += f"; {len(self.skipped)} skipped{shown}"
        return line
