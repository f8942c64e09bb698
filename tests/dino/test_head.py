"""Tests for dinokit.dino.head (reference: facebookresearch/dino DINOHead)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinokit.dino.head import (
    DINOHead,
    HeadShape,
    cancel_last_layer_gradients,
    convert_legacy_head_state_dict,
    head_shape,
    to_legacy_head_state_dict,
)

IN_DIM = 12
OUT_DIM = 5
HIDDEN = 16
BOTTLENECK = 256


def _legacy_state_dict(gen: torch.Generator) -> dict[str, Tensor]:
    """A head state dict in the official DINO layout (old torch.nn.utils.weight_norm)."""

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen)

    return {
        "mlp.0.weight": rand(HIDDEN, IN_DIM),
        "mlp.0.bias": rand(HIDDEN),
        "mlp.2.weight": rand(HIDDEN, HIDDEN),
        "mlp.2.bias": rand(HIDDEN),
        "mlp.4.weight": rand(BOTTLENECK, HIDDEN),
        "mlp.4.bias": rand(BOTTLENECK),
        "last_layer.weight_g": rand(OUT_DIM, 1).abs() + 0.5,
        "last_layer.weight_v": rand(OUT_DIM, BOTTLENECK),
    }


def _by_hand(sd: dict[str, Tensor], x: Tensor) -> Tensor:
    """The head's forward written out from the reference formula."""
    h = F.gelu(x @ sd["mlp.0.weight"].T + sd["mlp.0.bias"])
    h = F.gelu(h @ sd["mlp.2.weight"].T + sd["mlp.2.bias"])
    z = h @ sd["mlp.4.weight"].T + sd["mlp.4.bias"]
    z = z / z.norm(dim=-1, keepdim=True)
    v = sd["last_layer.weight_v"]
    w = sd["last_layer.weight_g"] * v / v.norm(dim=1, keepdim=True)
    out: Tensor = z @ w.T
    return out


def _head() -> DINOHead:
    return DINOHead(IN_DIM, OUT_DIM, hidden_dim=HIDDEN, bottleneck_dim=BOTTLENECK)


def test_forward_shape_and_out_dim() -> None:
    head = _head()
    out = head(torch.randn(4, IN_DIM))
    assert out.shape == (4, OUT_DIM)
    assert head.out_dim == OUT_DIM
    assert head.in_dim == IN_DIM


def test_reference_module_layout() -> None:
    head = _head()
    linear_names = [n for n, m in head.mlp.named_children() if isinstance(m, nn.Linear)]
    assert linear_names == ["0", "2", "4"]
    assert all(isinstance(head.mlp[i], nn.GELU) for i in (1, 3))
    assert head.last_layer.bias is None
    assert set(head.state_dict()) == {
        "mlp.0.weight",
        "mlp.0.bias",
        "mlp.2.weight",
        "mlp.2.bias",
        "mlp.4.weight",
        "mlp.4.bias",
        "last_layer.parametrizations.weight.original0",
        "last_layer.parametrizations.weight.original1",
    }


def test_reference_init() -> None:
    torch.manual_seed(0)
    head = DINOHead(384, 64)
    for i in (0, 2, 4):
        layer = head.mlp[i]
        assert isinstance(layer, nn.Linear)
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(head.last_layer_g, torch.ones(64, 1))
    assert not head.last_layer_g.requires_grad
    assert head.last_layer_v.requires_grad
    # g = 1 means every prototype (row of the effective weight) has unit norm.
    weight = head.last_layer.weight
    assert torch.allclose(weight.norm(dim=1), torch.ones(64), atol=1e-5)


def test_norm_last_layer_false_trains_g() -> None:
    head = DINOHead(IN_DIM, OUT_DIM, norm_last_layer=False)
    assert head.last_layer_g.requires_grad
    head(torch.randn(3, IN_DIM)).sum().backward()
    assert head.last_layer_g.grad is not None


def test_other_depths_and_batchnorm() -> None:
    one = DINOHead(IN_DIM, OUT_DIM, n_layers=1, bottleneck_dim=8)
    assert len(one.mlp) == 1
    assert one(torch.randn(2, IN_DIM)).shape == (2, OUT_DIM)
    bn = DINOHead(IN_DIM, OUT_DIM, hidden_dim=HIDDEN, bottleneck_dim=8, use_bn=True, n_layers=4)
    kinds = [type(m).__name__ for m in bn.mlp]
    assert kinds == ["Linear", "BatchNorm1d", "GELU"] * 3 + ["Linear"]
    assert bn(torch.randn(3, IN_DIM)).shape == (3, OUT_DIM)


@pytest.mark.parametrize("bad", ["in_dim", "out_dim", "n_layers"])
def test_invalid_sizes(bad: str) -> None:
    kwargs = {"in_dim": IN_DIM, "out_dim": OUT_DIM, "n_layers": 3}
    kwargs[bad] = 0
    with pytest.raises(ValueError, match=bad):
        DINOHead(kwargs["in_dim"], kwargs["out_dim"], n_layers=kwargs["n_layers"])


def test_loads_legacy_layout_and_matches_hand_computation() -> None:
    gen = torch.Generator().manual_seed(1)
    legacy = _legacy_state_dict(gen)
    head = _head()
    head.load_state_dict(legacy)  # strict: no missing or unexpected keys
    x = torch.randn(3, IN_DIM, generator=gen)
    with torch.no_grad():
        out = head(x)
    torch.testing.assert_close(out, _by_hand(legacy, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(head.last_layer_g.detach(), legacy["last_layer.weight_g"])
    assert not head.last_layer_g.requires_grad  # loading keeps the freeze


def test_loads_legacy_layout_nested_in_a_model() -> None:
    gen = torch.Generator().manual_seed(2)
    legacy = {f"head.{k}": v for k, v in _legacy_state_dict(gen).items()}
    model = nn.ModuleDict({"head": _head()})
    model.load_state_dict(legacy)
    head = model["head"]
    assert isinstance(head, DINOHead)
    torch.testing.assert_close(head.last_layer_v.detach(), legacy["head.last_layer.weight_v"])


def test_convert_and_back() -> None:
    gen = torch.Generator().manual_seed(3)
    legacy = {f"module.head.{k}": v for k, v in _legacy_state_dict(gen).items()}
    legacy["module.backbone.cls_token"] = torch.zeros(1)
    modern = convert_legacy_head_state_dict(legacy)
    assert "module.head.last_layer.parametrizations.weight.original0" in modern
    assert "module.head.last_layer.parametrizations.weight.original1" in modern
    assert not any(k.endswith(("weight_g", "weight_v")) for k in modern)
    assert "module.backbone.cls_token" in modern
    assert "module.head.last_layer.weight_g" in legacy  # input untouched
    assert to_legacy_head_state_dict(modern).keys() == legacy.keys()
    stripped = {k.removeprefix("module.head."): v for k, v in modern.items() if ".head." in k}
    head = _head()
    head.load_state_dict(stripped)


def test_modern_round_trip() -> None:
    src, dst = _head(), _head()
    dst.load_state_dict(src.state_dict())
    x = torch.randn(2, IN_DIM)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


@pytest.mark.parametrize(("n_layers", "use_bn"), [(3, False), (3, True), (2, True), (1, False)])
def test_head_shape_reads_the_arguments_back(n_layers: int, use_bn: bool) -> None:
    head = DINOHead(IN_DIM, OUT_DIM, hidden_dim=HIDDEN, n_layers=n_layers, use_bn=use_bn)
    hidden = HIDDEN if n_layers > 1 else 2048  # one layer has no hidden width: the default
    expected = HeadShape(OUT_DIM, BOTTLENECK, hidden, n_layers, use_bn, norm_last_layer=True)
    assert head_shape(head.state_dict()) == expected
    with torch.no_grad():
        head.last_layer_g.mul_(2.0)  # learned norms: trained with norm_last_layer false
    legacy = to_legacy_head_state_dict(head.state_dict())
    assert head_shape(legacy) == dataclasses.replace(expected, norm_last_layer=False)
    with pytest.raises(ValueError, match="unrecognised DINO head keys"):
        head_shape({"mlp.0.weight": torch.zeros(2, 2)})


def test_cancel_last_layer_gradients() -> None:
    head = DINOHead(IN_DIM, OUT_DIM, norm_last_layer=False)
    head(torch.randn(3, IN_DIM)).sum().backward()
    cancel_last_layer_gradients(head)
    assert head.last_layer_g.grad is None
    assert head.last_layer_v.grad is None
    assert all(p.grad is not None for p in head.mlp.parameters())
