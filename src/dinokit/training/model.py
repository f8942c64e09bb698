"""Student and teacher networks: a backbone and a DINO head over multi-crop views.

As the reference ``MultiCropWrapper``, consecutive views of the same resolution go through
the backbone as one batch (two calls per step for 2 global + N local crops, not 2 + N).
The head always runs in float32: its output is sharpened by temperatures as low as 0.04,
where bf16 rounding of the logits would be amplified 25 times.
"""

from __future__ import annotations

from itertools import groupby
from typing import Literal, overload

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

    @overload
    def forward(self, views: list[Tensor], *, with_features: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(
        self, views: list[Tensor], *, with_features: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...

    def forward(
        self, views: list[Tensor], *, with_features: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Project every view.

        Args:
            views: ``V`` tensors ``(B, 3, h_v, w_v)``, e.g. 2 global then N local crops.
            with_features: Also return the backbone outputs (for a loss on them, e.g. KoLeo).

        Returns:
            ``(V * B, K)`` float32 head outputs, view after view; with ``with_features``
            also the ``(V * B, D)`` backbone outputs they came from, in the same order.
        """
        features = []
        for _, group in groupby(views, key=lambda v: tuple(v.shape[-2:])):
            features.append(self.backbone(torch.cat(list(group))))
        tokens = torch.cat(features)
        with torch.autocast(tokens.device.type, enabled=False):
            out: Tensor = self.head(tokens.float())
        return (out, tokens) if with_features else out
