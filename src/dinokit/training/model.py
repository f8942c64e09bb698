"""Student and teacher networks: a backbone and a DINO head over multi-crop views.

As the reference ``MultiCropWrapper``, consecutive views of the same resolution go through
the backbone as one batch (two calls per step for 2 global + N local crops, not 2 + N).
The head always runs in float32: its output is sharpened by temperatures as low as 0.04,
where bf16 rounding of the logits would be amplified 25 times.
"""

from __future__ import annotations

from itertools import groupby

import torch
from torch import Tensor, nn

from ..dino import DINOHead
from ..models import Backbone


class MultiCropNetwork(nn.Module):
    """Backbone + DINO head applied to a list of views.

    Attributes:
        backbone: The ViT backbone (CLS token output).
        head: The DINO projection head.
    """

    def __init__(self, backbone: Backbone, head: DINOHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: list[Tensor]) -> Tensor:
        """Project every view.

        Args:
            views: ``V`` tensors ``(B, 3, h_v, w_v)``, e.g. 2 global then N local crops.

        Returns:
            ``(V * B, K)`` float32 head outputs, view after view.
        """
        features = []
        for _, group in groupby(views, key=lambda v: tuple(v.shape[-2:])):
            features.append(self.backbone(torch.cat(list(group))))
        tokens = torch.cat(features)
        with torch.autocast(tokens.device.type, enabled=False):
            out: Tensor = self.head(tokens.float())
        return out
