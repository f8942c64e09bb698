"""BatchNorm over the whole distributed batch, for DINO heads with ``--use-bn-in-head``.

facebookresearch/dino ``main_dino.py`` converts student and teacher to
``nn.SyncBatchNorm`` when they hold BatchNorm layers, so that a head's statistics are those
of the global batch, not of each GPU's share. ``nn.SyncBatchNorm`` only runs on GPUs;
:class:`SyncBatchNorm1d` computes the same statistics with autograd-aware all-reduces, so
it runs with NCCL and with gloo on CPUs alike. In training mode each process contributes
its rows' sum and sum of squared deviations; the mean and (biased) variance normalise, the
unbiased variance of all ``N`` rows updates the running estimate, as ``F.batch_norm`` does
for one process holding every row. Gradients flow through the all-reduces (their backward
is an all-reduce of the gradients), as in ``nn.SyncBatchNorm``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .distributed import world_size


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of each process's input is the sum of the
    gradients of every process's output (each output is the same sum)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


def all_reduce(tensor: Tensor) -> Tensor:
    """Differentiable sum of ``tensor`` over every process (same shape on each)."""
    out: Tensor = _AllReduceSum.apply(tensor)
    return out


class SyncBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training-mode statistics cover every process's rows.

    Without a process group (or with one process, or in eval mode) it is plain
    ``nn.BatchNorm1d``. Input ``(N, C)``; output ``(N, C)``.
    """

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(input)
        if input.ndim != 2:
            raise ValueError(f"SyncBatchNorm1d expects (N, C) inputs, got {tuple(input.shape)}")
        count = input.new_full((1,), float(input.shape[0]))
        sums = all_reduce(torch.cat([input.sum(0), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = input - mean
        var = all_reduce((centred * centred).sum(0)) / n
        out = centred * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked.item())
        else:
            factor = self.momentum
        unbiased = var * n / (n - 1).clamp_min(1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def has_batchnorms(module: nn.Module) -> bool:
    """Whether ``module`` holds BatchNorm layers (the reference's ``utils.has_batchnorms``)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def convert_sync_batchnorm(module: nn.Module) -> int:
    """Replace every ``nn.BatchNorm1d`` in ``module`` by a :class:`SyncBatchNorm1d`, in place.

    The new layers share the old ones' parameters and buffers (an optimizer built before
    keeps working) and their train/eval mode.

    Returns:
        The number of layers replaced.
    """
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.BatchNorm1d:
                continue
            sync = SyncBatchNorm1d(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            if child.affine:
                sync.weight, sync.bias = child.weight, child.bias
            if child.track_running_stats:
                sync.running_mean = child.running_mean
                sync.running_var = child.running_var
                sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(parent, name, sync)
            replaced += 1
    return replaced
