"""What an ``embed`` run is asked to do, and what it did.

:class:`EmbedConfig` is where every option of ``dinokit embed`` / :func:`dinokit.embed` /
:class:`~dinokit.embed.Embedder` is defined, once: its type, default and help text (the
command line's flags are built from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_io import check_choices, flag
from ..data.preprocess import MODES
from ..embeddings import check_format
from ..models import Backbone
from ..models.weights.files import BRANCHES
from ..runtime.precision import PRECISIONS
from .pooling import POOLINGS


@dataclass(kw_only=True)
class EmbedConfig:
    """The options of an embedding run; an :class:`~dinokit.embed.Embedder` uses those from
    ``model`` to ``device``. Each field's help text is what ``dinokit embed --help`` shows.

    Raises:
        ValueError: A value outside its choices, a batch size or chunk under 1, negative
            workers, an unknown output format, patch tokens for a file other than Parquet.
    """

    inputs: list[str | Path] = field(
        default_factory=list,
        metadata=flag("image folders, list files (.txt/.lst), images", name="data", nargs="+"),
    )
    # A registered name, a run folder or a weights file; in Python also a Backbone in memory
    # (its vectors then record no model to rebuild unless it came from a file).
    model: str | Path | Backbone = field(
        metadata=flag("backbone name, timm:<name>, run folder or weights file")
    )
    weights: str | Path | None = field(
        default=None, metadata=flag("with a name: a weights file, or 'none' (random init)")
    )
    branch: str = field(
        default="teacher",
        metadata=flag("network of a run or full checkpoint to embed with", choices=BRANCHES),
    )
    preprocess: str | None = field(
        default=None,
        metadata=flag("preprocessing mode (default: the model's own, center-crop)", choices=MODES),
    )
    size: int | None = field(
        default=None, metadata=flag("input size in pixels (default: the model's)")
    )
    feature: str = field(
        default="cls",
        metadata=flag(
            "the vector: the CLS token, the patch tokens' mean, both, or the CLS tokens of the "
            "last 4 blocks (%(default)s)",
            choices=POOLINGS,
        ),
    )
    normalize: bool = field(default=True, metadata=flag("keep raw vectors"))  # --no-normalize
    patch_tokens: bool = field(
        default=False, metadata=flag("also store patch tokens (.parquet only)")
    )
    batch_size: int = field(default=64, metadata=flag("images per forward (%(default)s)"))
    workers: int | None = field(
        default=None, metadata=flag("decoding processes (all cores but one)")
    )
    precision: str = field(
        default="auto",
        metadata=flag(
            "autocast precision; vectors are float32 (auto: bf16 where the hardware has it)",
            choices=sorted(PRECISIONS, key=lambda name: name != "auto"),
        ),
    )
    device: str = field(default="auto", metadata=flag("auto | cpu | cuda | cuda:N"))
    # None keeps the result in memory (Python only; the command writes a file).
    out: str | Path | None = field(
        default=None, metadata=flag("FILE.parquet, FILE.npy or FILE.csv", required=True)
    )
    overwrite: bool = field(
        default=False, metadata=flag("replace an output made with other options")
    )
    chunk_rows: int = 2048  # rows per Parquet part written while running (memory stays flat)
    progress: bool = field(
        default=True, metadata=flag("log lines instead of a bar")
    )  # --no-progress

    def __post_init__(self) -> None:
        check_choices(self)
        if self.batch_size < 1 or self.chunk_rows < 1 or (self.workers or 0) < 0:
            raise ValueError(
                "batch_size and chunk_rows must be >= 1 and workers >= 0, got "
                f"{self.batch_size}, {self.chunk_rows} and {self.workers}"
            )
        if self.out is not None and check_format(self.out) != ".parquet" and self.patch_tokens:
            raise ValueError(f"{self.out}: patch tokens are written to .parquet files only")


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
