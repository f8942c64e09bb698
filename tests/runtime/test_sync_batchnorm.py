"""Converting a DINO head's BatchNorm layers for DDP (the 2-process run is in test_ddp.py)."""

from __future__ import annotations

import torch

from dinokit.dino import DINOHead
from dinokit.runtime.sync_batchnorm import (
    SyncBatchNorm1d,
    convert_sync_batchnorm,
    has_batchnorms,
)


def test_conversion_keeps_parameters_buffers_and_mode() -> None:
    head = DINOHead(16, 32, hidden_dim=24, bottleneck_dim=8, use_bn=True)
    norms = [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    norms[1].eval()
    tensors = [(m.weight, m.bias, m.running_mean, m.running_var) for m in norms]
    assert has_batchnorms(head) and not has_batchnorms(DINOHead(16, 32, hidden_dim=24))
    assert convert_sync_batchnorm(head) == 2
    synced = [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(type(m) is SyncBatchNorm1d for m in synced)
    assert [m.training for m in synced] == [True, False]
    for module, originals in zip(synced, tensors, strict=True):
        current = (module.weight, module.bias, module.running_mean, module.running_var)
        assert all(a is b for a, b in zip(current, originals, strict=True))
    assert convert_sync_batchnorm(head) == 0  # already converted


def test_without_a_process_group_it_is_batchnorm() -> None:
    """fp32 on the CPU: one process holds every row, so the layer is nn.BatchNorm1d."""
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm1d(8)
    synced = torch.nn.Sequential(torch.nn.BatchNorm1d(8))
    synced.load_state_dict({"0." + k: v for k, v in plain.state_dict().items()})
    convert_sync_batchnorm(synced)
    x = torch.randn(6, 8) * 3 + 1
    torch.testing.assert_close(synced(x), plain(x), atol=0, rtol=0)
    torch.testing.assert_close(synced[0].running_var, plain.running_var, atol=0, rtol=0)
