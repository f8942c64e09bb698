"""Near-duplicate threshold: cosines of modified copies and of distinct photos, for one model.

Reproduces the table of ``docs/using-embeddings.md`` ("How the default threshold was
chosen"). The photos of a folder (default ``../shared/data/imagenette-mini/val``) are saved
as JPEG q95 in a temporary folder, and ``--copies`` of them (100) also as real modified
copies: JPEG q30, 1/2 downscale, 1/4 downscale at q50, 90% and 75% centre crops (the copies
of ``dinokit.duplicates.copies``; lossless ones as PNG). Both folders are embedded with
``dinokit.embed`` and the table rows are printed: for each kind of copy n / min / 5th
percentile / median of its cosine to its original, and each photo against its most similar
other photo. Then ``calibrate_threshold`` runs on the originals' embeddings and its
threshold is printed.

    python benchmarks/duplicates_threshold.py --model runs/nette          # a run folder
    python benchmarks/duplicates_threshold.py --model vit_test --limit 40 # a quick check
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dinokit.data import list_images, open_image
from dinokit.duplicates import COPY_KINDS, CopyKind, calibrate_threshold
from dinokit.duplicates.copies import modify
from dinokit.duplicates.nearest import most_similar_others
from dinokit.embed import Embeddings, embed

DEFAULT_DATA = (Path(__file__).parents[1] / ".." / "shared" / "data" / "imagenette-mini").resolve()

KINDS = (*COPY_KINDS, CopyKind("crop75", "75% crop", crop=0.75, calibrates=False))
"""The copies of the table: the calibration's kinds plus a 75% crop."""


def write_collection(photos: list[Path], copied: set[int], folder: Path) -> tuple[Path, Path]:
    """Originals as ``originals/<i>.jpg`` (q95), copies as ``copies/<kind>/<i>.{jpg,png}``."""
    originals, copies = folder / "originals", folder / "copies"
    for i, photo in enumerate(photos):
        name = f"{i:05d}"
        target = originals / f"{name}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        open_image(photo).save(target, format="JPEG", quality=95)
        if i not in copied:
            continue
        image = open_image(target)  # the copies start from the saved file, as a user's would
        for kind in KINDS:
            out = copies / kind.name / f"{name}.{'png' if kind.quality is None else 'jpg'}"
            out.parent.mkdir(parents=True, exist_ok=True)
            if kind.quality is None:
                modify(image, kind).save(out, format="PNG")
            else:
                modify(image, kind).save(out, format="JPEG", quality=kind.quality)
    return originals, copies


def embed_folder(folder: Path, args: argparse.Namespace) -> Embeddings:
    """``dinokit.embed`` of one folder into ``<folder>.parquet``, with the model's defaults."""
    return embed(
        folder,
        model=args.model,
        weights=args.weights,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        out=folder.with_suffix(".parquet"),
    )


def stats_row(label: str, scores: NDArray[np.float32]) -> str:
    """``| label | n | min | 5th percentile | median |``."""
    low, p5, median = scores.min(), np.percentile(scores, 5), np.median(scores)
    return f"| {label} | {len(scores)} | {low:.4f} | {p5:.4f} | {median:.4f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="name, run folder or weights file")
    parser.add_argument("--weights", help="with a name: a weights file, or none (random)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "val", help="photo folder")
    parser.add_argument("--limit", type=int, help="use only this many photos (seeded choice)")
    parser.add_argument("--copies", type=int, default=100, help="photos also saved as copies")
    parser.add_argument("--sample", type=int, default=200, help="calibrate_threshold sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, help="decoding processes (dinokit's default)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    photos = sorted(r.path for r in list_images(args.data).records)
    if args.limit is not None and args.limit < len(photos):
        photos = [photos[i] for i in sorted(rng.choice(len(photos), args.limit, replace=False))]
    n_copies = min(args.copies, len(photos))
    copied = {int(i) for i in rng.choice(len(photos), n_copies, replace=False)}
    with tempfile.TemporaryDirectory(prefix="dup_threshold_") as tmp:
        start = time.perf_counter()
        originals, copies = write_collection(photos, copied, Path(tmp))
        written = time.perf_counter()
        orig, copy = embed_folder(originals, args), embed_folder(copies, args)
        embedded = time.perf_counter()
        print(
            f"{args.model}: {len(photos)} photos of {args.data}, {n_copies} x {len(KINDS)} "
            f"copies; written in {written - start:.0f} s, embedded in {embedded - written:.0f} s "
            f"({orig.metadata['preprocess']} {orig.metadata['size']}, "
            f"{orig.metadata['precision']})"
        )
        print()
        print("| pairs | n | min cosine | 5th percentile | median |")
        print("|---|---|---|---|---|")
        x = unit(orig.vectors)
        row_of = {path: i for i, path in enumerate(orig.paths)}
        y = unit(copy.vectors)
        for kind in KINDS:
            rows = [i for i, label in enumerate(copy.labels) if label == kind.name]
            originals_of = [row_of[Path(copy.paths[i]).stem + ".jpg"] for i in rows]
            scores = np.einsum("nd,nd->n", y[rows], x[originals_of])
            print(stats_row(f"{kind.description} vs original", scores))
        distinct, _ = most_similar_others(x, np.arange(len(orig)), orig.absolute_path)
        print(
            f"| **each photo vs its most similar other photo** | {len(distinct)} "
            f"| median {np.median(distinct):.4f} | 99th pct {np.percentile(distinct, 99):.4f} "
            f"| max {distinct.max():.4f} |"
        )
        print()
        calibration = calibrate_threshold(
            orig,
            sample=args.sample,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
        )
        took = time.perf_counter() - embedded
        c = calibration
        print(
            f"calibrate_threshold (sample {c.sampled}, {took:.0f} s): threshold "
            f"{c.threshold:.4f}, {'separable' if c.separable else 'NOT separable'} "
            f"(copies' 5th pct {c.copies_p5:.4f}, distinct 99th pct {c.distinct.p99:.4f}; "
            f"{c.missed:.1%} of copies missed, {c.linked:.1%} of distinct photos linked)"
        )
        for s in c.copies:
            print(
                f"  {s.description}: n {s.n}, min {s.min:.4f}, 5th pct {s.p5:.4f}, "
                f"median {s.median:.4f}{'' if s.calibrates else ' (reported only)'}"
            )


def unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows L2-normalised (files written with ``--no-normalize`` too)."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


if __name__ == "__main__":
    main()
