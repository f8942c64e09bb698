"""Does fine-tuning help? The measurements behind ``docs/finetuning.md``.

Stages (each keeps its results in ``--out``; a finished stage is not redone, so an interrupted
run continues where it stopped):

``scratch``
    DINO from random weights on ``cifar10-mini/train`` (5,000 CIFAR-10 images, labels unused):
    ``dinokit train`` with the small-image recipe below, then the loop the usual guide builds
    with lightly (same ViT, crops and batch) for the same wall-clock time. Teacher kNN top-1
    on ``cifar10-mini/test`` after each epoch.
``seeds``
    The scratch recipe with and without its KoLeo term, for each of ``--seeds`` (same
    budget; the seed-0 recipe run is the ``scratch`` one).
``pretrain``
    The "pretrained" model: the same recipe for a longer, fixed budget
    (``--pretrain-epochs``) on ``cifar10-mini/train``.
``finetune``
    The pretrained model above is the starting point. For each seed, on
    ``imagenette-mini/train`` (1,000 photos, labels unused), at equal epochs: dinokit's
    fine-tuning defaults, the same at the naive arm's lr, naive continued training (one lr
    for every layer, random head, no warm-up), and training from scratch. kNN with
    ``dinokit evaluate`` on ``imagenette-mini/val`` before and after, and on
    ``cifar10-mini/test`` after (what the pretraining domain kept).
``strong``
    The same question from strong features: a stand-in trained with labels on
    ``cifar10-mini/train`` (``--supervised-epochs``), then dinokit's defaults and naive
    continued training on ``imagenette-mini/train`` for each of ``--strong-seeds``.
``extras``
    The fine-tuned model of seed 0: preprocessing modes and teacher vs student.
``probes``
    Why the recipe is what it is: the first ``--probe-steps`` steps of the scratch run (its
    schedules unchanged) with one setting changed at a time; teacher and student kNN.
``report``
    ``results.json``, ``results.md`` (the tables) and ``curves.png``.

    pip install -e '.[bench]'        # lightly, for the guide's loop
    python benchmarks/finetune_experiment.py --out runs/finetune-experiment

Everything runs on the CPU at 32 px (a 192-d, 6-block ViT with 4 px patches); the defaults
take about 4 hours on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
MODEL = "vit_small32"
# What both scratch loops share: the ViT, the crops (2 x 32 px + 4 x 16 px) and the batch.
SHARED = {"global_size": 32, "local_size": 16, "local_crops": 4, "batch_size": 128}
# dinokit's recipe for short runs from scratch on small images (docs/finetuning.md says why).
SCRATCH_RECIPE: dict[str, Any] = {
    "lr": 4e-3,  # per 256 images: 2e-3 at batch 128, with the automatic 10% warm-up
    "out_dim": 256,
    "momentum": 0.99,
    "use_bn_in_head": True,
    "drop_path": 0.0,
    "freeze_last_layer": 0.0,
    "koleo": 0.1,  # DINOv2's weight: keeps the batch's features apart while targets form
}
# Fine-tuning runs: 1,000 images at batch 64 = 15 steps per epoch.
FT_SHARED = {"global_size": 32, "local_size": 16, "local_crops": 4, "batch_size": 64}
# The guide's hyperparameters for its loop (AdamW 1e-3, 2048 prototypes, EMA 0.996 -> 1).
GUIDE_LR = 1e-3
GUIDE_OUT_DIM = 2048

logger = logging.getLogger("finetune_experiment")


# --------------------------------------------------------------------------- helpers


def _option(key: str, value: Any) -> list[str]:
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + key.replace("_", "-")]
    return [flag, str(value)]


def dinokit_train(data: Path, out: Path, options: dict[str, Any], threads: int) -> float:
    """Run ``dinokit train`` in a fresh process; returns its wall-clock seconds.

    A finished run is reused. An interrupted one that saved a checkpoint is resumed; the time
    it had spent counts from its ``config.yaml`` (written at the start) to its last checkpoint
    (work after that checkpoint is redone), so the total stays comparable.
    """
    if (out / "teacher.safetensors").exists():
        return float(json.loads((out / "wall.json").read_text())["seconds"])
    command = [sys.executable, "-m", "dinokit", "train", str(data), "--out", str(out)]
    command += ["--no-progress"]
    last, config = out / "checkpoints" / "last.pt", out / "config.yaml"
    spent = 0.0
    if last.exists() and config.exists():
        spent = last.stat().st_mtime - config.stat().st_mtime
        command += ["--resume"]
        logger.info("resuming %s (%.1f min already spent)", out, spent / 60)
    elif out.exists():
        shutil.rmtree(out)
    for key, value in options.items():
        command += _option(key, value)
    logger.info("%s", " ".join(command))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = spent + time.perf_counter() - start
    (out / "wall.json").write_text(json.dumps({"seconds": seconds, "resumed": spent > 0}))
    return seconds


def knn_curve(run: Path) -> list[dict[str, float]]:
    """The kNN records of a dinokit run's ``metrics.jsonl`` (epoch, top-1, label-free scores)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        {
            "epoch": float(r["epoch"]),
            "knn": float(r["knn_top1"]),
            "effective_rank": float(r["effective_rank"]),
        }
        for r in rows
        if r.get("kind") == "knn"
    ]


def evaluate(model: str | Path, train: Path, val: Path, **options: Any) -> list[dict[str, Any]]:
    """``dinokit evaluate`` rows as dicts (kNN at k = 20 and the label-free scores)."""
    import dinokit

    rows = dinokit.evaluate(
        str(model), train=train, val=val, k=[20], workers=1, precision="fp32", **options
    )
    return [
        {
            "preprocess": r.preprocess,
            "branch": r.branch,
            "knn": r.knn[20],
            "effective_rank": r.quality.get("effective_rank"),
        }
        for r in rows
    ]


# --------------------------------------------------------------------------- guide's loop


def guide_loop(
    data: Path,
    eval_train: Path,
    eval_val: Path,
    out: Path,
    *,
    budget_s: float,
    epochs_for_schedule: int,
    seed: int,
    threads: int,
) -> dict[str, Any]:
    """The loop the usual guide builds with lightly, run for ``budget_s`` wall-clock seconds.

    timm ViT + lightly ``DINOProjectionHead`` / ``DINOLoss`` / ``DINOTransform``, torchvision
    ``ImageFolder``, AdamW 1e-3, one backbone call per view, EMA momentum cosine 0.996 -> 1
    per epoch, last layer frozen in epoch 0. The clock includes its kNN evaluations, as the
    dinokit run's does.
    """
    result_file = out / "result.json"
    if result_file.exists():
        return dict(json.loads(result_file.read_text()))
    from lightly.loss import DINOLoss
    from lightly.transforms import DINOTransform
    from lightly.utils.scheduler import cosine_schedule
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from _guide import GuideDINO, guide_step
    from dinokit.models import Backbone, get_config
    from dinokit.training.monitor import KnnMonitor

    start = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = get_config(MODEL)

    def vit() -> nn.Module:
        return VisionTransformer(
            img_size=32,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            num_classes=0,
            dynamic_img_size=True,
            drop_path_rate=0.1,
        )

    model = GuideDINO(vit(), config.embed_dim, GUIDE_OUT_DIM)
    transform = DINOTransform(
        global_crop_size=SHARED["global_size"],
        local_crop_size=SHARED["local_size"],
        n_local_views=SHARED["local_crops"],
    )
    dataset = ImageFolder(str(data), transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=SHARED["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=1,
        persistent_workers=True,
    )
    criterion = DINOLoss(output_dim=GUIDE_OUT_DIM, warmup_teacher_temp_epochs=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=GUIDE_LR)
    monitor = KnnMonitor(str(eval_train), str(eval_val), k=20, workers=1)

    def knn() -> tuple[float, float]:
        backbone = Backbone(model.teacher_backbone, config)
        backbone.eval()
        accuracy = monitor.evaluate(backbone, device=torch.device("cpu"))
        model.teacher_backbone.train()
        rank = (monitor.last_quality or {}).get("effective_rank", math.nan)
        return accuracy, rank

    steps_per_epoch = len(loader)
    accuracy, rank = knn()
    curve = [{"epoch": 0.0, "knn": accuracy, "effective_rank": rank}]
    logger.info("guide loop: epoch 0 kNN %.2f%%", 100 * accuracy)
    step, epoch, done = 0, 0, False
    while not done:
        momentum = cosine_schedule(epoch, epochs_for_schedule, 0.996, 1)
        for views, _ in loader:
            loss = guide_step(model, criterion, optimizer, views, momentum=momentum, epoch=epoch)
            step += 1
            if step % 10 == 0:
                logger.info(
                    "guide loop: step %d loss %.4f, %.0f s",
                    step,
                    loss.item(),
                    time.perf_counter() - start,
                )
            if time.perf_counter() - start >= budget_s:
                done = True
                break
        epoch += 1
        accuracy, rank = knn()
        curve.append({"epoch": step / steps_per_epoch, "knn": accuracy, "effective_rank": rank})
        logger.info("guide loop: %d steps, kNN %.2f%%", step, 100 * accuracy)
        if time.perf_counter() - start >= budget_s:
            done = True
    result = {"steps": step, "seconds": time.perf_counter() - start, "curve": curve}
    out.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=1))
    return result


# --------------------------------------------------------------------------- stages


def scratch_options(cifar: Path, epochs: int, *, monitor: bool = True) -> dict[str, Any]:
    """``dinokit train`` options of the from-scratch recipe on cifar10-mini (seed 0)."""
    options: dict[str, Any] = {
        "model": MODEL,
        "weights": "none",
        **SHARED,
        **SCRATCH_RECIPE,
        "epochs": epochs,
        "workers": 1,
        "seed": 0,
    }
    if monitor:
        options.update(eval_train=cifar / "train", eval_val=cifar / "test")
    return options


def stage_scratch(args: argparse.Namespace, results: dict[str, Any]) -> None:
    cifar = args.data / "cifar10-mini"
    options = scratch_options(cifar, args.scratch_epochs)
    run = args.out / "scratch-dinokit"
    seconds = dinokit_train(cifar / "train", run, options, args.threads)
    results["scratch"] = {"dinokit": {"seconds": seconds, "curve": knn_curve(run)}}
    budget = max(seconds, 60 * args.budget_min) if args.budget_min else seconds
    guide = guide_loop(
        cifar / "train",
        cifar / "train",
        cifar / "test",
        args.out / "scratch-guide",
        budget_s=budget,
        epochs_for_schedule=args.scratch_epochs,
        seed=0,
        threads=args.threads,
    )
    results["scratch"]["guide"] = guide


# The from-scratch recipe against itself without its KoLeo term, over seeds (the seed-0
# recipe run is the one timed against the guide's loop).
RECIPE_VARIANTS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "recipe without KoLeo": {"koleo": 0.0},
}


def stage_seeds(args: argparse.Namespace, results: dict[str, Any]) -> None:
    cifar = args.data / "cifar10-mini"
    curves: dict[str, dict[str, Any]] = {}
    for name, change in RECIPE_VARIANTS.items():
        for seed in args.seeds:
            options = scratch_options(cifar, args.scratch_epochs)
            options.update(change, seed=seed)
            if name == "recipe" and seed == 0:
                run = args.out / "scratch-dinokit"
            else:
                run = args.out / f"seeds-{name.replace(' ', '-')}-seed{seed}"
            dinokit_train(cifar / "train", run, options, args.threads)
            curves.setdefault(name, {})[str(seed)] = knn_curve(run)
    results["seeds"] = curves


def stage_pretrain(args: argparse.Namespace, results: dict[str, Any]) -> None:
    cifar = args.data / "cifar10-mini"
    options = scratch_options(cifar, args.pretrain_epochs)
    run = args.out / "pretrain"
    seconds = dinokit_train(cifar / "train", run, options, args.threads)
    results["pretrain"] = {"seconds": seconds, "curve": knn_curve(run)}


def finetune_arms(pretrained: Path) -> dict[str, dict[str, Any]]:
    """The ways to train on the new domain, at equal epochs."""
    return {
        # dinokit's defaults: the run folder brings its head and centre; lr, layer decay,
        # warm-up and head warm-up are left to the fine-tuning defaults.
        "dinokit defaults": {"model": pretrained},
        # The same, with the naive arm's lr (1e-3 at batch 64): which part of the naive
        # arm's change comes from its lr alone, with the head, warm-ups and layer decay kept.
        "dinokit, naive's lr": {
            "model": pretrained,
            "lr": GUIDE_LR * 256 / FT_SHARED["batch_size"],
        },
        # What a guide user does: load the backbone under a new random head, the guide's
        # AdamW lr 1e-3 for every layer (dinokit's lr is per 256 images), no warm-ups.
        "naive": {
            "model": pretrained / "teacher.safetensors",
            "lr": GUIDE_LR * 256 / FT_SHARED["batch_size"],
            "layer_decay": 1.0,
            "warmup_epochs": 0,
            "head_warmup_epochs": 0,
            "freeze_last_layer": 0,
            "out_dim": GUIDE_OUT_DIM,
            "momentum": 0.996,
        },
        # From random weights on the new domain with the small-image scratch recipe.
        "from scratch": {"model": MODEL, "weights": "none", **SCRATCH_RECIPE},
    }


def both_domains(args: argparse.Namespace, model: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """kNN on the new domain (imagenette-mini val) and the pretraining one (cifar10-mini test)."""
    nette, cifar = args.data / "imagenette-mini", args.data / "cifar10-mini"
    return (
        evaluate(model, nette / "train", nette / "val")[0],
        evaluate(model, cifar / "train", cifar / "test")[0],
    )


def finetune_runs(
    args: argparse.Namespace, arms: dict[str, dict[str, Any]], seeds: list[int], prefix: str
) -> dict[str, list[dict[str, Any]]]:
    """Each arm for each seed on imagenette-mini/train, measured on both domains.

    A finished run's measurements are kept in its folder (``evaluation.json``) and reused.
    """
    nette = args.data / "imagenette-mini"
    runs: dict[str, list[dict[str, Any]]] = {}
    for arm, arm_options in arms.items():
        runs[arm] = []
        for seed in seeds:
            options = {**FT_SHARED, **arm_options, "epochs": args.ft_epochs, "workers": 1}
            options.update(seed=seed, eval_train=nette / "train", eval_val=nette / "val")
            run = args.out / f"{prefix}{arm.replace(' ', '-')}-seed{seed}"
            seconds = dinokit_train(nette / "train", run, options, args.threads)
            saved = run / "evaluation.json"
            if not saved.exists():
                after, cifar_after = both_domains(args, run)
                saved.write_text(json.dumps({"after": after, "cifar_after": cifar_after}))
            measured = json.loads(saved.read_text())
            runs[arm].append(
                {"seed": seed, "seconds": seconds, **measured, "curve": knn_curve(run)}
            )
            logger.info(
                "%s%s seed %d: kNN %.1f%% (cifar10-mini %.1f%%)",
                prefix,
                arm,
                seed,
                100 * measured["after"]["knn"],
                100 * measured["cifar_after"]["knn"],
            )
    return runs


def stage_finetune(args: argparse.Namespace, results: dict[str, Any]) -> None:
    pretrained = args.out / "pretrain"
    # The pretraining domain too: what each arm keeps of what the model had learned there.
    before, before_cifar = both_domains(args, pretrained)
    results["finetune"] = {
        "before": before,
        "before_cifar": before_cifar,
        "arms": finetune_runs(args, finetune_arms(pretrained), args.seeds, "ft-"),
    }


def train_supervised(data: Path, path: Path, *, epochs: int, seed: int, threads: int) -> float:
    """A ``vit_small32`` trained with labels on ``data`` (an image folder), saved to ``path``.

    Official weights cannot be downloaded here, and a few hundred DINO steps on this CPU give
    features only a little better than random ones. A supervised model is a stand-in for
    strong pretrained features: what it separates, fine-tuning can keep or destroy. The
    backbone is trained on the CLS token under a linear classifier (AdamW 1e-3, weight decay
    0.05, 1-epoch warm-up then cosine, batch 128, a random 4 px shift per batch, random flips)
    and saved as a dinokit file without the classifier. Returns the training seconds.
    """
    if path.exists():
        return float(json.loads(path.with_suffix(".json").read_text())["seconds"])
    from torch import nn
    from torch.nn import functional as F
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    from dinokit.models import create_backbone
    from dinokit.models.export import save_backbone

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    folder = ImageFolder(str(data))
    images = torch.stack([pil_to_tensor(folder.loader(p)) for p, _ in folder.samples])
    labels = torch.tensor(folder.targets)
    backbone = create_backbone(MODEL, weights="none")
    pre = backbone.config.preprocessing
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    classifier = nn.Linear(backbone.embed_dim, len(folder.classes))
    params = [*backbone.parameters(), *classifier.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    batch, n = 128, len(labels)
    steps_per_epoch = n // batch
    total, warmup = epochs * steps_per_epoch, steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    start, step = time.perf_counter(), 0
    backbone.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            x = images[idx].float() / 255
            # Random 4 px shift (zero padding) and horizontal flip.
            x = F.pad(x, (4, 4, 4, 4))
            dx, dy = torch.randint(0, 9, (2,), generator=generator).tolist()
            x = x[:, :, dy : dy + 32, dx : dx + 32]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(3)
            lr = 1e-3 * (
                (step + 1) / warmup
                if step < warmup
                else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(classifier(backbone((x - mean) / std)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        logger.info("supervised epoch %d: loss %.3f", epoch + 1, loss.item())
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = {"base_weights": f"supervised on {data} for {epochs} epochs", "epochs": epochs}
    save_backbone(backbone.eval(), path, provenance=provenance)
    path.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))
    logger.info("supervised model saved to %s", path)
    return seconds


def stage_strong(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Fine-tuning arms from the supervised stand-in for strong pretrained features."""
    weights = args.out / "supervised" / "backbone.safetensors"
    seconds = train_supervised(
        args.data / "cifar10-mini" / "train",
        weights,
        epochs=args.supervised_epochs,
        seed=0,
        threads=args.threads,
    )
    before, before_cifar = both_domains(args, weights)
    naive = finetune_arms(weights.parent)["naive"]
    arms = {
        "dinokit defaults": {"model": weights},
        # Ten times the default lr, everything else kept: can the gentle recipe move strong
        # features towards the new domain in this budget without losing them?
        "dinokit defaults, lr 1e-3": {"model": weights, "lr": 1e-3},
        "naive": {**naive, "model": weights},
    }
    results["strong"] = {
        "seconds": seconds,
        "epochs": args.supervised_epochs,
        "before": before,
        "before_cifar": before_cifar,
        "arms": finetune_runs(args, arms, args.strong_seeds, "strong-"),
    }


# One change at a time from the scratch recipe (docs/finetuning.md, "Why these settings").
PROBES: dict[str, dict[str, Any]] = {
    "recipe": {},
    "out_dim 2048": {"out_dim": 2048},
    "out_dim 2048, lr 1e-3": {"out_dim": 2048, "lr": 1e-3},
    "teacher temp 0.02": {"teacher_temp": 0.02, "warmup_teacher_temp": 0.02},
    "EMA momentum 0.9": {"momentum": 0.9},
    "no BatchNorm in head": {"use_bn_in_head": False},
    "no lr warm-up": {"warmup_epochs": 0},
    "no KoLeo": {"koleo": 0.0},
    "KoLeo 0.3": {"koleo": 0.3},
}


def stage_probes(args: argparse.Namespace, results: dict[str, Any]) -> None:
    cifar = args.data / "cifar10-mini"
    results["probes"] = {"steps": args.probe_steps, "rows": {}}
    for name, change in PROBES.items():
        options = scratch_options(cifar, args.scratch_epochs + 1, monitor=False)
        options.update(change, max_steps=args.probe_steps)
        run = args.out / f"probe-{name.replace(' ', '-').replace(',', '')}"
        dinokit_train(cifar / "train", run, options, args.threads)
        rows = evaluate(run, cifar / "train", cifar / "test", branch=["teacher", "student"])
        entropy = [
            json.loads(line)["teacher_entropy"]
            for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("kind") == "step"
        ]
        results["probes"]["rows"][name] = {
            "teacher": rows[0]["knn"],
            "student": rows[1]["knn"],
            "teacher_entropy_last": entropy[-1] if entropy else None,
            "teacher_entropy_min": min(entropy) if entropy else None,
            "max_entropy": math.log(int(options["out_dim"])),
        }
        logger.info("probe %s: %s", name, results["probes"]["rows"][name])


def stage_extras(args: argparse.Namespace, results: dict[str, Any]) -> None:
    nette = args.data / "imagenette-mini"
    run = args.out / f"ft-dinokit-defaults-seed{args.seeds[0]}"
    modes = ["center-crop", "resize", "letterbox"]
    results["extras"] = {
        "pretrained": evaluate(
            args.out / "pretrain", nette / "train", nette / "val", preprocess=modes
        ),
        "fine-tuned": evaluate(
            run,
            nette / "train",
            nette / "val",
            preprocess=modes,
            branch=["teacher", "student"],
        ),
    }


# --------------------------------------------------------------------------- report


def _mean_sd(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{100 * mean:.1f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def _arms_table(arms: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown rows for :func:`finetune_runs` results: both domains, mean ± sd and per seed."""
    lines = [
        "| arm | imagenette-mini kNN | per seed | cifar10-mini kNN after | per seed "
        "| minutes per run |",
        "|---|---|---|---|---|---|",
    ]
    for arm, runs in arms.items():
        cells = [arm]
        for key in ("after", "cifar_after"):
            values = [r[key]["knn"] for r in runs]
            cells += [_mean_sd(values), ", ".join(f"{100 * v:.1f}" for v in values)]
        cells.append(f"{sum(r['seconds'] for r in runs) / len(runs) / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    lines: list[str] = []
    scratch = results.get("scratch")
    if scratch:
        lines += [
            "## From scratch on cifar10-mini, equal wall-clock",
            "",
            "| loop | wall-clock | steps | kNN at init | kNN at the end |",
            "|---|---|---|---|---|",
        ]
        dk, guide = scratch["dinokit"], scratch["guide"]
        dk_steps = round(dk["curve"][-1]["epoch"] * (5000 // SHARED["batch_size"]))
        lines.append(
            f"| dinokit train | {dk['seconds'] / 60:.1f} min | {dk_steps} | "
            f"{100 * dk['curve'][0]['knn']:.1f}% | **{100 * dk['curve'][-1]['knn']:.1f}%** |"
        )
        lines.append(
            f"| guide's lightly loop | {guide['seconds'] / 60:.1f} min | {guide['steps']} | "
            f"{100 * guide['curve'][0]['knn']:.1f}% | "
            f"**{100 * guide['curve'][-1]['knn']:.1f}%** |"
        )
        lines.append("")
    seeds = results.get("seeds")
    if seeds:
        lines += [
            "## From scratch on cifar10-mini: the recipe over seeds",
            "",
            "| recipe | seeds | kNN per epoch, mean ± sd (%) | final per seed |",
            "|---|---|---|---|",
        ]
        for name, by_seed in seeds.items():
            runs = list(by_seed.values())
            epochs = min(len(c) for c in runs)
            means = " -> ".join(_mean_sd([c[e]["knn"] for c in runs]) for e in range(epochs))
            final = ", ".join(f"{100 * c[-1]['knn']:.1f}" for c in runs)
            lines.append(f"| {name} | {', '.join(by_seed)} | {means} | {final} |")
        lines.append("")
    pretrain = results.get("pretrain")
    if pretrain:
        curve = " -> ".join(f"{100 * c['knn']:.1f}" for c in pretrain["curve"])
        lines += [
            f"## The pretrained model: {len(pretrain['curve']) - 1} epochs on cifar10-mini",
            "",
            f"Teacher kNN top-1 per epoch (%): {curve}; {pretrain['seconds'] / 60:.1f} min.",
            "",
        ]
    finetune = results.get("finetune")
    if finetune:
        seeds = ", ".join(str(s) for s in args.seeds)
        lines += [
            f"## Fine-tuning on imagenette-mini (seeds {seeds}, {args.ft_epochs} epochs)",
            "",
            f"Pretrained model before fine-tuning: {100 * finetune['before']['knn']:.1f}% "
            f"(cifar10-mini test: {100 * finetune['before_cifar']['knn']:.1f}%)",
            "",
            *_arms_table(finetune["arms"]),
        ]
    strong = results.get("strong")
    if strong:
        lines += [
            f"## From strong features: supervised on cifar10-mini ({strong['epochs']} epochs, "
            f"{strong['seconds'] / 60:.1f} min), fine-tuned on imagenette-mini",
            "",
            f"Before: imagenette-mini {100 * strong['before']['knn']:.1f}%, "
            f"cifar10-mini {100 * strong['before_cifar']['knn']:.1f}%",
            "",
            *_arms_table(strong["arms"]),
        ]
    extras = results.get("extras")
    if extras:
        lines += [
            "## Preprocessing and branch (imagenette-mini val, kNN top-1)",
            "",
            "| model | preprocess | branch | kNN | effective rank |",
            "|---|---|---|---|---|",
        ]
        for model, rows in extras.items():
            for r in rows:
                lines.append(
                    f"| {model} | {r['preprocess']} | {r['branch']} | {100 * r['knn']:.1f}% "
                    f"| {r['effective_rank']:.1f} |"
                )
        lines.append("")
    probes = results.get("probes")
    if probes:
        lines += [
            f"## One change at a time: the first {probes['steps']} steps from scratch",
            "",
            "| setting | teacher kNN | student kNN | teacher entropy (min -> last, of max) |",
            "|---|---|---|---|",
        ]
        for name, row in probes["rows"].items():
            lines.append(
                f"| {name} | {100 * row['teacher']:.1f}% | {100 * row['student']:.1f}% | "
                f"{row['teacher_entropy_min']:.2f} -> {row['teacher_entropy_last']:.2f} "
                f"of {row['max_entropy']:.2f} |"
            )
        lines.append("")
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    _plot(args, results)


def _plot(args: argparse.Namespace, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arm_panels = [
        (results[key], title)
        for key, title in (
            ("finetune", "Fine-tuning the DINO model on imagenette-mini"),
            ("strong", "Fine-tuning strong features on imagenette-mini"),
        )
        if results.get(key)
    ]
    panels = 1 + len(arm_panels)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    axes = axes[0]
    scratch = results.get("scratch")
    if scratch:
        ax = axes[0]
        for name, key in (("dinokit train", "dinokit"), ("guide's lightly loop", "guide")):
            curve = scratch[key]["curve"]
            ax.plot([c["epoch"] for c in curve], [100 * c["knn"] for c in curve], "o-", label=name)
        # The same run without KoLeo (seed 0 of the seeds stage), when that stage ran.
        without = results.get("seeds", {}).get("recipe without KoLeo", {}).get("0")
        if without:
            epochs, knn = [c["epoch"] for c in without], [100 * c["knn"] for c in without]
            ax.plot(epochs, knn, "o--", color="C0", alpha=0.6, label="dinokit without KoLeo")
        ax.set_title("From scratch, cifar10-mini (equal wall-clock)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("teacher kNN top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax, (finetune, title) in zip(axes[1:], arm_panels, strict=True):
        for i, (arm, runs) in enumerate(finetune["arms"].items()):
            for j, run in enumerate(runs):
                curve = run["curve"]
                ax.plot(
                    [c["epoch"] for c in curve],
                    [100 * c["knn"] for c in curve],
                    "o-",
                    color=f"C{i}",
                    alpha=0.8,
                    label=arm if j == 0 else None,
                )
        ax.set_title(f"{title} (each seed)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("teacher kNN top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-experiment"))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--stages", default="scratch,seeds,pretrain,finetune,strong,extras,report")
    parser.add_argument("--scratch-epochs", type=int, default=3)
    parser.add_argument(
        "--budget-min",
        type=float,
        default=15.0,
        help="the guide's loop runs this long, or as long as the dinokit run if longer",
    )
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--ft-epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe-steps", type=int, default=50)
    parser.add_argument("--supervised-epochs", type=int, default=10)
    parser.add_argument("--strong-seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.exists() else {}
    stages = {
        "scratch": stage_scratch,
        "seeds": stage_seeds,
        "pretrain": stage_pretrain,
        "finetune": stage_finetune,
        "extras": stage_extras,
        "probes": stage_probes,
        "strong": stage_strong,
    }
    for name in args.stages.split(","):
        if name == "report":
            write_report(args, results)
            continue
        stages[name](args, results)
        results_file.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
