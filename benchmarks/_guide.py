"""The DINO loop the usual guide builds with lightly, shared by the benchmarks that compare
against it: a student/teacher module and one training step, as the guide writes them.

Needs the ``bench`` extra (``pip install -e '.[bench]'``) for lightly.
"""

from __future__ import annotations

import copy

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn


class GuideDINO(nn.Module):
    """Student backbone + lightly head, and a frozen deep copy of both as the teacher.

    Args:
        backbone: A ViT returning (B, dim) CLS features.
        dim: Feature width.
        out_dim: Prototypes of the head (hidden 2048, bottleneck 256).
    """

    def __init__(self, backbone: nn.Module, dim: int, out_dim: int) -> None:
        super().__init__()
        self.student_backbone = backbone
        self.student_head = DINOProjectionHead(dim, 2048, 256, out_dim, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(self.student_backbone)
        self.teacher_head = DINOProjectionHead(dim, 2048, 256, out_dim)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student_head(self.student_backbone(x).flatten(start_dim=1))

    def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.teacher_backbone(x).flatten(start_dim=1))


def guide_step(
    model: GuideDINO,
    criterion: DINOLoss,
    optimizer: torch.optim.Optimizer,
    views: list[torch.Tensor],
    *,
    momentum: float,
    epoch: int,
) -> torch.Tensor:
    """One step of the guide's loop: EMA update, one backbone call per view, AdamW step.

    Args:
        views: 2 global crops (B, 3, G, G) first, then the local crops (B, 3, L, L).

    Returns:
        The loss (a scalar tensor, detached from the graph after the step).
    """
    update_momentum(model.student_backbone, model.teacher_backbone, m=momentum)
    update_momentum(model.student_head, model.teacher_head, m=momentum)
    teacher_out = [model.forward_teacher(v) for v in views[:2]]
    student_out = [model.forward(v) for v in views]
    loss = criterion(teacher_out, student_out, epoch=epoch)
    loss.backward()
    model.student_head.cancel_last_layer_gradients(current_epoch=epoch)
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()
