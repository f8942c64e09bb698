"""What the training monitor's extra work costs, against one kNN measurement of the teacher.

On a labelled train/val pair (default: cifar10-mini, 5,000 / 1,000 images at 32 px) and a
random-weight backbone (default: ``vit_small32``): one kNN measurement of the teacher (what
the monitor does at the start and at each epoch end), the raw-pixel baseline and the
random-init baseline (each once per new run), and the label-free check of a run without
labels (a 1,000-image sample of the train folder, at the start and at each epoch end).
Prints the seconds of each and the ratio to the kNN measurement.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dinokit.data import list_images
from dinokit.models import create_backbone
from dinokit.runtime.precision import autocast_context, resolve_precision
from dinokit.training.monitor import KnnMonitor, LabelFreeCheck

DATA = Path("/work/shared/data/cifar10-mini")


def timed(work: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=str(DATA / "train"))
    parser.add_argument("--val", default=str(DATA / "test"))
    parser.add_argument("--model", default="vit_small32")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    device = torch.device("cpu")
    precision = resolve_precision(args.precision, device)
    autocast = autocast_context(precision, device)
    torch.manual_seed(0)
    teacher = create_backbone(args.model, weights="none").eval()
    monitor = KnnMonitor(args.train, args.val, k=20)
    check = LabelFreeCheck(list_images(args.train).records)
    options = {"device": device, "autocast": autocast}
    knn_s, knn = timed(lambda: monitor.evaluate(teacher, **options))
    rows = {
        "kNN of the teacher (start, each epoch)": (knn_s, f"{100 * float(knn):.1f}%"),
    }
    seconds, pixels = timed(monitor.raw_pixel_baseline)
    rows["raw-pixel baseline (once)"] = (seconds, f"{100 * float(pixels):.1f}%")
    seconds, random_init = timed(
        lambda: monitor.random_init_baseline(teacher.config, seed=0, **options)
    )
    rows["random-init baseline (once, fine-tuning)"] = (seconds, f"{100 * float(random_init):.1f}%")
    seconds, score = timed(lambda: check.measure(teacher, **options))
    rows[f"label-free check, {len(check.records)} images (start, each epoch)"] = (
        seconds,
        str(score),
    )
    print(f"{args.model} ({precision}), {len(monitor.train)} / {len(monitor.val)} images")
    for name, (seconds, value) in rows.items():
        print(f"{name:58s} {seconds:7.2f} s  x{seconds / knn_s:5.2f}  {value}")


if __name__ == "__main__":
    main()
