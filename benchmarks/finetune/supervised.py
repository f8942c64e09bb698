"""A stand-in for strong pretrained features: ``vit_small32`` trained with labels.

Official weights cannot be downloaded here, and a few hundred DINO steps on this CPU give
features only a little better than random ones. A supervised model is a stand-in for strong
pretrained features: what it separates, fine-tuning can keep or destroy.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.datasets import ImageFolder
from torchvision.transforms.functional import pil_to_tensor

from dinokit.dino.schedules import cosine_schedule
from dinokit.models import create_backbone
from dinokit.models.export import save_backbone

from .settings import MODEL

logger = logging.getLogger("finetune_experiment")

LR = 1e-3
WEIGHT_DECAY = 0.05


def train_supervised(
    data: Path, path: Path, *, epochs: int, seed: int, threads: int, batch_size: int = 128
) -> float:
    """A ``vit_small32`` trained with labels on ``data`` (an image folder), saved to ``path``.

    The backbone is trained on the CLS token under a linear classifier (AdamW 1e-3, weight
    decay 0.05, 1-epoch linear warm-up then cosine to 0, a random 4 px shift per batch, random
    flips) and saved as a dinokit file without the classifier, with the training seconds
    next to it (``path`` with ``.json``). A saved model is reused.

    Returns:
        The training seconds.
    """
    if path.exists():
        return float(json.loads(path.with_suffix(".json").read_text())["seconds"])
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
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = len(labels) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{data}: {len(labels)} images, fewer than one batch of {batch_size}")
    # (step + 1) / warm-up steps x LR during the first epoch, then a half cosine to 0.
    lrs = cosine_schedule(
        LR,
        0.0,
        total_steps=epochs * steps_per_epoch,
        warmup_steps=steps_per_epoch,
        start_warmup_value=LR / steps_per_epoch,
    )
    generator = torch.Generator().manual_seed(seed)
    start, step = time.perf_counter(), 0
    backbone.train()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            x = _shift_and_flip(images[idx].float() / 255, generator)
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[step])
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


def _shift_and_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """A random shift of up to 4 px (zero padding) for the batch, a random flip per image.

    Args:
        x: (B, 3, 32, 32) in [0, 1].

    Returns:
        (B, 3, 32, 32).
    """
    x = F.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (2,), generator=generator).tolist()
    x = x[:, :, dy : dy + 32, dx : dx + 32]
    flip = torch.rand(len(x), generator=generator) < 0.5
    x[flip] = x[flip].flip(3)
    return x
