"""What ``dinokit train --budget`` learns: several seeds of one command, with the baselines.

Runs ``dinokit train DATA --budget B --seed S [extra flags]`` once per seed, one after the
other (each alone on the machine: a time budget buys fewer steps when the CPU is shared),
with the kNN monitor on a labelled train/val pair, and prints per seed the steps the budget
bought, the wall-clock time, and teacher kNN top-1 start -> best -> last, then the mean and
standard deviation, beside the raw-pixel kNN of the same images. Results go to
``--out/results.json``; a seed whose run folder already holds a ``summary.json`` is read, not
run again, so an interrupted benchmark continues.

Example (the from-scratch defaults on CIFAR-10, 15 minutes each)::

    python benchmarks/budget_runs.py --data cifar10-mini/train --eval-val cifar10-mini/test \\
        --model vit_small32 --weights none --budget 15m --seeds 0 1 2 --out runs/budget
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from dinokit.api._evaluate import raw_pixel_row
from dinokit.runtime.machine import environment_report
from dinokit.runtime.precision import resolve_precision


def run_seed(args: argparse.Namespace, seed: int, extra: list[str]) -> dict[str, Any]:
    """One training run (or the result of an earlier one); returns its numbers."""
    out = Path(args.out) / f"seed{seed}"
    summary_file = out / "summary.json"
    wall = None
    if not summary_file.is_file():
        command = [
            sys.executable, "-m", "dinokit", "train", args.data, "--out", str(out),
            "--model", args.model, "--budget", args.budget, "--seed", str(seed),
            "--eval-train", args.eval_train or args.data, "--eval-val", args.eval_val,
            "--no-progress", *(["--weights", args.weights] if args.weights else []), *extra,
        ]  # fmt: skip
        if out.exists():
            command.append("--resume")
        print("$", " ".join(command), flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - started
    summary = json.loads(summary_file.read_text())["knn"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    return {
        "seed": seed,
        "steps": config["steps"],
        "wall_s": wall,
        "start": summary["start"]["knn_top1"],
        "best": summary["best"]["knn_top1"],
        "best_epoch": summary["best"]["epoch"],
        "last": summary["last"]["knn_top1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="training folder")
    parser.add_argument("--eval-train", help="labelled kNN references (default: --data)")
    parser.add_argument("--eval-val", required=True, help="labelled kNN queries")
    parser.add_argument("--model", default="vit_small32")
    parser.add_argument("--weights", default="none", help="'' for official weights")
    parser.add_argument("--budget", default="15m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True)
    args, extra = parser.parse_known_args()

    env = environment_report()
    auto = resolve_precision("auto", torch.device("cpu"))
    print(f"{env['cpu']}, {env['cpu_cores']} cores, {', '.join(env['cpu_flags'])}, auto = {auto}")
    results = [run_seed(args, seed, extra) for seed in args.seeds]
    pixels = raw_pixel_row(args.eval_train or args.data, args.eval_val, k=(20,))
    pixel_knn = pixels.knn[20] if pixels is not None else None

    print(f"\n{args.model} {args.weights or 'official'} --budget {args.budget} {' '.join(extra)}")
    print("| seed | steps | wall-clock | start | best (epoch) | last |")
    print("|---|---|---|---|---|---|")
    for r in results:
        wall = f"{r['wall_s'] / 60:.1f} min" if r["wall_s"] else "(earlier run)"
        print(
            f"| {r['seed']} | {r['steps']} | {wall} | {100 * r['start']:.1f}% | "
            f"{100 * r['best']:.1f}% ({r['best_epoch']}) | {100 * r['last']:.1f}% |"
        )
    for key in ("start", "best", "last"):
        values = [100 * r[key] for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{key}: {statistics.mean(values):.1f} ± {spread:.1f}%")
    if pixel_knn is not None:
        print(f"raw pixels (32 px) kNN@20: {100 * pixel_knn:.1f}%")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    record = {"args": vars(args), "extra": extra, "runs": results, "raw_pixels": pixel_knn}
    (Path(args.out) / "results.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
