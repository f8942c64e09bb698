"""The loop the usual guide builds with lightly, run for a wall-clock budget.

timm ViT + lightly ``DINOProjectionHead`` / ``DINOLoss`` / ``DINOTransform``, torchvision
``ImageFolder``, AdamW 1e-3, one backbone call per view, EMA momentum cosine 0.996 -> 1 per
epoch, last layer frozen in epoch 0 (the step itself is ``benchmarks/_guide.py``). Needs the
``bench`` extra (lightly), imported when the loop runs.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from dinokit.models import Backbone, BackboneConfig, get_config
from dinokit.training.monitor import KnnMonitor

from .results import GuideRun, KnnPoint, read_json, write_json
from .settings import CROPS, GUIDE_LR, GUIDE_OUT_DIM, MODEL

if TYPE_CHECKING:
    from _guide import GuideDINO

logger = logging.getLogger("finetune_experiment")


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
    batch_size: int,
) -> GuideRun:
    """Train with the guide's loop on ``data`` for ``budget_s`` wall-clock seconds.

    The clock includes its kNN evaluations, as the dinokit run's does. A finished run (its
    ``out/result.json``) is reused.
    """
    result_file = out / "result.json"
    if result_file.exists():
        return read_json(GuideRun, result_file)
    from lightly.loss import DINOLoss
    from lightly.transforms import DINOTransform
    from lightly.utils.scheduler import cosine_schedule

    from _guide import GuideDINO, guide_step

    start = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = get_config(MODEL)
    model = GuideDINO(_vit(config), config.embed_dim, GUIDE_OUT_DIM)
    transform = DINOTransform(
        global_crop_size=CROPS["global_size"],
        local_crop_size=CROPS["local_size"],
        n_local_views=CROPS["local_crops"],
    )
    loader = DataLoader(
        ImageFolder(str(data), transform=transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=1,
        persistent_workers=True,
    )
    criterion = DINOLoss(output_dim=GUIDE_OUT_DIM, warmup_teacher_temp_epochs=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=GUIDE_LR)
    monitor = KnnMonitor(str(eval_train), str(eval_val), k=20, workers=1)
    curve = [_teacher_knn(model, config, monitor, epoch=0.0)]
    logger.info("guide loop: epoch 0 kNN %.2f%%", 100 * curve[0].knn)
    step, epoch = 0, 0
    while True:
        momentum = cosine_schedule(epoch, epochs_for_schedule, 0.996, 1)
        for views, _ in loader:
            loss = guide_step(model, criterion, optimizer, views, momentum=momentum, epoch=epoch)
            step += 1
            if step % 10 == 0:
                seconds = time.perf_counter() - start
                logger.info("guide loop: step %d loss %.4f, %.0f s", step, loss.item(), seconds)
            if time.perf_counter() - start >= budget_s:
                break  # out of time: measured where it stopped
        epoch += 1
        curve.append(_teacher_knn(model, config, monitor, epoch=step / len(loader)))
        logger.info("guide loop: %d steps, kNN %.2f%%", step, 100 * curve[-1].knn)
        if time.perf_counter() - start >= budget_s:
            break
    result = GuideRun(steps=step, seconds=time.perf_counter() - start, curve=curve)
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, result_file)
    return result


def _vit(config: BackboneConfig) -> nn.Module:
    """timm's ViT with the architecture of ``config``, as the guide builds it."""
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


def _teacher_knn(
    model: GuideDINO, config: BackboneConfig, monitor: KnnMonitor, *, epoch: float
) -> KnnPoint:
    """kNN of the teacher backbone, which goes back to training mode after."""
    backbone = Backbone(model.teacher_backbone, config)
    backbone.eval()
    accuracy = monitor.evaluate(backbone, device=torch.device("cpu"))
    model.teacher_backbone.train()
    rank = (monitor.last_quality or {}).get("effective_rank", math.nan)
    return KnnPoint(epoch, accuracy, rank)
