"""Training-step throughput: dinokit against a lightly-based loop built the way the guide does.

Both train DINO ViT-S/16 (random init) with the same recipe: 2 x 224 + 6 x 96 crops, batch 8,
AdamW, head 384 -> 2048 -> 2048 -> 256 -> out_dim, EMA teacher, last layer frozen in epoch 0.
Crops are made once (the same tensors for both), so the numbers are the step alone. Rounds
alternate between the loops so machine noise hits both alike. Prints images/s and ratios.

    python benchmarks/train_throughput.py [--steps 4] [--batch 8] [--out-dim 65536]

Needs the ``bench`` extra (``pip install -e '.[bench]'``) for lightly.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import timm
import torch

from dinokit.runtime.precision import autocast_context, resolve_precision
from dinokit.training import TrainConfig
from dinokit.training.loop import train_step
from dinokit.training.resolve import resolve_config
from dinokit.training.run import build_state
from dinokit.training.start import load_start


def make_views(batch: int, n_local: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(batch, 3, 224, 224, generator=g) for _ in range(2)]
    return views + [torch.randn(batch, 3, 96, 96, generator=g) for _ in range(n_local)]


def lightly_step_fn(batch: int, out_dim: int) -> Callable[[list[torch.Tensor]], None]:
    """The guide's loop: lightly's DINOProjectionHead / DINOLoss, one forward per view."""
    from lightly.loss import DINOLoss

    from _guide import GuideDINO, guide_step

    backbone = timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        num_classes=0,
        dynamic_img_size=True,
        drop_path_rate=0.1,
    )
    model = GuideDINO(backbone, 384, out_dim)
    criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp_epochs=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4 * batch / 256)

    def step(views: list[torch.Tensor]) -> None:
        guide_step(model, criterion, optimizer, views, momentum=0.996, epoch=0)

    return step


def dinokit_step_fn(
    batch: int, out_dim: int, precision: str
) -> Callable[[list[torch.Tensor]], None]:
    config = TrainConfig(
        data=["unused"],
        model="dino_vits16",
        weights="none",
        epochs=1,
        batch_size=batch,
        out_dim=out_dim,
        local_crops=6,
        precision=precision,
        device="cpu",
        progress=False,
    )
    start = load_start(config)
    device = torch.device("cpu")
    resolved = resolve_config(config, start, n_images=1000 * batch, device=device)
    state = build_state(resolved, start, device=device, world_size=1, n_images=1000 * batch)
    autocast = autocast_context(resolved.precision, device)

    def step(views: list[torch.Tensor]) -> None:
        train_step(state, views, autocast)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out-dim", type=int, default=65536)
    args = parser.parse_args()
    torch.manual_seed(0)
    views = make_views(args.batch, 6)
    default_precision = resolve_precision("auto", torch.device("cpu"))
    loops = {
        "lightly loop (fp32)": lightly_step_fn(args.batch, args.out_dim),
        f"dinokit ({default_precision}, default)": dinokit_step_fn(
            args.batch, args.out_dim, "auto"
        ),
    }
    if default_precision != "fp32":
        loops["dinokit (fp32)"] = dinokit_step_fn(args.batch, args.out_dim, "fp32")
    times: dict[str, float] = dict.fromkeys(loops, 0.0)
    for step in loops.values():  # warm-up (allocations, oneDNN primitives)
        step(views)
    for _ in range(args.rounds):
        for name, step in loops.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(views)
            times[name] += time.perf_counter() - start
    n_images = args.batch * args.steps * args.rounds
    rates = {name: n_images / seconds for name, seconds in times.items()}
    base = rates["lightly loop (fp32)"]
    print(
        f"ViT-S/16, batch {args.batch}, 2x224 + 6x96 crops, out_dim {args.out_dim}, "
        f"{torch.get_num_threads()} threads"
    )
    for name, rate in rates.items():
        print(f"{name:28s} {rate:6.2f} img/s   x{rate / base:.2f} vs lightly loop")


if __name__ == "__main__":
    main()
