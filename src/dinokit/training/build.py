"""A run's student, teacher and loss: the backbone with its starting weights, the DINO head
(the one the weights brought, or a new one), the teacher as an exact copy, and the loss with
the centre the weights brought."""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch

from ..dino import DINOHead, DINOLoss, defaults, make_teacher
from ..models import Backbone, build_vit
from ..models.factory import fill_backbone
from .config import ResolvedConfig
from .model import MultiCropNetwork
from .start import StartingPoint

logger = logging.getLogger(__name__)


class Networks(NamedTuple):
    """The student and its EMA teacher."""

    student: MultiCropNetwork
    teacher: MultiCropNetwork


def build_networks(config: ResolvedConfig, start: StartingPoint) -> Networks:
    """Student (with stochastic depth) and teacher (exact copy, no drop path), on the CPU.

    Args:
        config: The resolved config (head options, ``drop_path``, ``global_size``).
        start: The architecture and the weights to start from (with their head, if any).
    """
    backbone = Backbone(build_vit(start.backbone, drop_path_rate=config.drop_path), start.backbone)
    if start.weights is not None:
        fill_backbone(backbone, start.weights)
    shape = start.head
    head = DINOHead(
        start.backbone.embed_dim,
        config.out_dim,
        hidden_dim=shape.hidden_dim if shape else config.hidden_dim,
        bottleneck_dim=shape.bottleneck_dim if shape else config.bottleneck_dim,
        n_layers=shape.n_layers if shape else defaults.HEAD_LAYERS,
        use_bn=config.use_bn_in_head,
        norm_last_layer=config.norm_last_layer,
    )
    if start.head_state:
        head.load_state_dict(start.head_state)
        logger.info(
            "loaded the DINO head (%d prototypes) from %s", config.out_dim, start.base_weights
        )
    if config.global_size != start.backbone.preprocessing.size:
        # The model learns at the global crop size: evaluate and export it at that size.
        backbone.config = start.backbone.with_preprocessing(size=config.global_size)
    student = MultiCropNetwork(backbone, head)
    teacher = make_teacher(student)
    assert isinstance(teacher, MultiCropNetwork)
    teacher.eval()
    # As in the reference (its teacher is never put in eval mode), a head with BatchNorm
    # normalises the teacher's outputs with the statistics of the batch it sees.
    for module in teacher.head.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.train()
    return Networks(student, teacher)


def build_loss(config: ResolvedConfig, start: StartingPoint) -> DINOLoss:
    """The DINO loss of the run, its centre the one the weights brought (if it fits)."""
    loss = DINOLoss(
        config.out_dim,
        n_crops=defaults.N_GLOBAL_CROPS + config.local_crops,
        warmup_teacher_temp=config.warmup_teacher_temp,
        teacher_temp=config.teacher_temp,
        warmup_teacher_temp_epochs=config.warmup_teacher_temp_epochs,
        n_epochs=config.epochs,
        student_temp=config.student_temp,
        center_momentum=config.center_momentum,
        centering=config.centering,
    )
    if start.center is not None and start.center.shape == loss.center.shape:
        loss.center.copy_(start.center)
        logger.info("loaded the loss centre from the weights file")
    return loss
