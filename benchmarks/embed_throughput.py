"""Embedding throughput: dinokit embed against the bare model and the guide's loop.

Prints, measured in one run on the same images, model and precision:

(a) dinokit embed images/s over the bare model on pre-decoded tensors (target >= 0.8): how
    much of the model's own speed survives reading, decoding, batching and writing;
(b) dinokit embed over the guide's one-image-at-a-time loop (PIL open, Resize(256) +
    CenterCrop(224) + ToTensor + Normalize, unsqueeze, fp32 forward under ``no_grad``);
(c) the model's achieved FLOP/s inside dinokit embed over the machine's measured fp32 matmul
    peak (a 2048 x 2048 ``torch.mm``, best of several).

    python benchmarks/embed_throughput.py [--data ../shared/data/imagenette-mini]
        [--images 128] [--model dino_vits16] [--batch-size 64] [--workers N]

The model is built with random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from dinokit.data import list_images, open_image
from dinokit.embed import EmbedConfig, Embedder, run_embed
from dinokit.runtime.machine import default_workers

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenette-mini"


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of a square ``torch.mm`` on this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_image(embedder: Embedder) -> float:
    """Forward FLOPs of one 224 x 224 image (matmuls and attention, as torch counts them)."""
    x = torch.zeros(1, 3, embedder.transform.size, embedder.transform.size)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        embedder.embed_tensor(x)
    return float(counter.get_total_flops())


def bare_model(embedder: Embedder, paths: list[Path]) -> float:
    """Images/s of the model alone on pre-decoded, pre-batched tensors."""
    images = [
        embedder.transform(open_image(p, draft_size=embedder.transform.draft_size)) for p in paths
    ]
    batches = list(torch.stack(images).split(embedder.batch_size))
    embedder.embed_tensor(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches:
        embedder.embed_tensor(batch)
    return len(paths) / (time.perf_counter() - start)


def dinokit_embed(paths: list[Path], args: argparse.Namespace, workdir: Path) -> float:
    """Images/s of the whole ``embed`` run (listing, decoding, model, Parquet written)."""
    listing = workdir / "images.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    options = {
        "model": args.model,
        "weights": "none",
        "batch_size": args.batch_size,
        "workers": args.workers,
        "precision": "auto",
    }
    warm = workdir / "warm.txt"
    warm.write_text("".join(f"{p}\n" for p in paths[: args.batch_size]))
    run_embed(EmbedConfig(inputs=[warm], out=workdir / "warm.parquet", **options))
    start = time.perf_counter()
    run_embed(EmbedConfig(inputs=[listing], out=workdir / "emb.parquet", **options))
    return len(paths) / (time.perf_counter() - start)


def guide_loop(model: torch.nn.Module, paths: list[Path]) -> float:
    """Images/s of the guide's loop: one image at a time, torchvision transforms, fp32."""
    preprocess = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )

    def one(path: Path) -> torch.Tensor:
        image = Image.open(path).convert("RGB")
        with torch.no_grad():
            out: torch.Tensor = model(preprocess(image).unsqueeze(0))
        return out

    one(paths[0])  # warm-up
    start = time.perf_counter()
    for path in paths:
        one(path)
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=128, help="images measured (first N)")
    parser.add_argument("--model", default="dino_vits16")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=default_workers(cap=8))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    paths = [r.path for r in list_images([args.data]).records][: args.images]
    embedder = Embedder(args.model, weights="none", batch_size=args.batch_size)
    print(
        f"{len(paths)} images of {args.data.name}, {args.model} (random init), "
        f"precision {embedder.precision}, batch {args.batch_size}, {args.workers} workers, "
        f"{torch.get_num_threads()} torch threads"
    )
    peak = matmul_peak()
    flops = flops_per_image(embedder)
    bare = bare_model(embedder, paths)
    with tempfile.TemporaryDirectory() as tmp:
        ours = dinokit_embed(paths, args, Path(tmp))
    guide = guide_loop(embedder.backbone, paths)

    print(f"matmul peak (fp32 2048^2 mm)       {peak / 1e9:8.1f} GFLOP/s")
    print(f"model forward                      {flops / 1e9:8.2f} GFLOP/image")
    print(f"bare model, pre-decoded tensors    {bare:8.2f} images/s")
    print(f"dinokit embed (files -> Parquet)   {ours:8.2f} images/s")
    print(f"guide loop (one image at a time)   {guide:8.2f} images/s")
    print(f"(a) dinokit / bare model           {ours / bare:8.2f}   (target >= 0.8)")
    print(f"(b) dinokit / guide loop           {ours / guide:8.2f}   (target >= 3)")
    print(f"(c) achieved / peak FLOP/s         {ours * flops / peak:8.2f}   (target >= 0.5)")


if __name__ == "__main__":
    main()
