"""Training input from large photos: JPEG decode plus DINO's 10 views, per image.

Three ways to decode the same JPEG before the reference's multi-crop (2 x 224 from 40-100%
of the image, 8 x 96 from 5-40%): in full (the reference), reduced only as far as no crop is
upsampled (dinokit, ``MultiCropTransform.decode_size``), and reduced until the short side
reaches the global crop size (the earlier rule, which upsampled crops). Prints the median
time of each and the ratio to the full decode.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dinokit.data import DecodeSize, open_image
from dinokit.dino import MultiCropTransform


def write_photo(path: Path, width: int, height: int) -> Path:
    """A JPEG (quality 90) with detail down to a few pixels everywhere."""
    rng = np.random.default_rng(0)
    coarse = (rng.random((height // 6, width // 6, 3)) * 255).astype(np.uint8)
    Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def seconds_per_image(path: Path, need: DecodeSize | None, repeats: int) -> tuple[float, str]:
    transform = MultiCropTransform()
    times, size = [], ""
    for i in range(repeats):
        start = time.perf_counter()
        image = open_image(path, draft_size=need)
        torch.manual_seed(i)
        transform(image)
        times.append(time.perf_counter() - start)
        size = f"{image.width} x {image.height}"
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one loader worker's view
    rules = {
        "full decode (reference)": None,
        "no crop upsampled (dinokit)": MultiCropTransform().decode_size,
        "short side >= 224 (earlier rule)": DecodeSize(224),
    }
    with tempfile.TemporaryDirectory() as folder:
        for width, height in ((1800, 1800), (4000, 3000)):
            photo = write_photo(Path(folder) / f"{width}x{height}.jpg", width, height)
            results = {
                name: seconds_per_image(photo, need, args.repeats) for name, need in rules.items()
            }
            full = results["full decode (reference)"][0]
            print(f"\n{width} x {height} JPEG: decode + 10 views, median of {args.repeats}")
            for name, (seconds, size) in results.items():
                print(
                    f"  {name:34s} decoded {size:>12s}  {seconds * 1e3:7.1f} ms  "
                    f"x{full / seconds:.2f} vs full"
                )


if __name__ == "__main__":
    main()
