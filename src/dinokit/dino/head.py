"""DINO projection head.

Follows ``DINOHead`` in facebookresearch/dino ``vision_transformer.py`` (Caron et al., 2021,
"Emerging Properties in Self-Supervised Vision Transformers", arXiv:2104.14294): an MLP to a
bottleneck, L2 normalisation, then a weight-normalised linear layer onto ``out_dim``
prototypes.

Differences from the reference:

* The last layer uses the modern ``torch.nn.utils.parametrizations.weight_norm`` (the old
  ``torch.nn.utils.weight_norm`` is deprecated). Its state-dict keys are
  ``last_layer.parametrizations.weight.original0`` (the norm ``g``) and ``...original1`` (the
  direction ``v``). Checkpoints written by the reference use ``last_layer.weight_g`` and
  ``last_layer.weight_v``; :class:`DINOHead` loads both layouts and
  :func:`convert_legacy_head_state_dict` / :func:`to_legacy_head_state_dict` convert between
  them.
* ``n_layers < 1`` is an error instead of being silently raised to 1.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .defaults import BOTTLENECK_DIM, HEAD_LAYERS, HIDDEN_DIM, NORM_LAST_LAYER, USE_BN_IN_HEAD

logger = logging.getLogger(__name__)

#: Std of the truncated normal init of the MLP's Linear weights (reference ``_init_weights``).
INIT_STD = 0.02
#: ``F.normalize``'s default eps, as used by the reference before the last layer.
NORMALIZE_EPS = 1e-12

_LEGACY_G = "weight_g"
_LEGACY_V = "weight_v"
_MODERN_G = "parametrizations.weight.original0"
_MODERN_V = "parametrizations.weight.original1"
_LAST_LAYER = "last_layer"


class DINOHead(nn.Module):
    """Projection head mapping backbone features to ``out_dim`` prototype scores.

    Architecture (reference ``DINOHead``): ``n_layers`` Linear layers with GELU in between
    (and BatchNorm1d before each GELU when ``use_bn``) ending in the bottleneck, stored in
    ``self.mlp`` (so the default's Linear layers are ``mlp.0``, ``mlp.2``, ``mlp.4``, as in the
    official checkpoints); L2 normalisation; ``self.last_layer``, a bias-free weight-normalised
    ``Linear(bottleneck_dim, out_dim)`` whose norm ``g`` starts at 1 and is frozen when
    ``norm_last_layer``.

    Args:
        in_dim: Width of the backbone features fed to the head (e.g. 384 for ViT-S).
        out_dim: Number of prototypes ``K`` (65536 in the paper). This is *not* the backbone
            width: passing the backbone width here is a classic mistake.
        hidden_dim: Width of the hidden MLP layers.
        bottleneck_dim: Width of the L2-normalised bottleneck.
        n_layers: Number of Linear layers in the MLP (>= 1).
        use_bn: Insert BatchNorm1d after each hidden Linear layer.
        norm_last_layer: Keep the last layer's weight norm fixed at 1 (not trainable). The
            reference recommends ``True`` for stability with ViTs.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        hidden_dim: int = HIDDEN_DIM,
        bottleneck_dim: int = BOTTLENECK_DIM,
        n_layers: int = HEAD_LAYERS,
        use_bn: bool = USE_BN_IN_HEAD,
        norm_last_layer: bool = NORM_LAST_LAYER,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_dim", in_dim),
            ("out_dim", out_dim),
            ("hidden_dim", hidden_dim),
            ("bottleneck_dim", bottleneck_dim),
            ("n_layers", n_layers),
        ):
            if value < 1:
                raise ValueError(f"DINOHead: {name} must be >= 1, got {value}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.bottleneck_dim = bottleneck_dim
        self.norm_last_layer = norm_last_layer

        self.mlp = _build_mlp(in_dim, hidden_dim, bottleneck_dim, n_layers, use_bn)
        # The reference initialises only the MLP; the last layer keeps PyTorch's default
        # Linear init, which the weight norm then splits into direction v and norm g := 1.
        self.mlp.apply(_init_linear)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        with torch.no_grad():
            self.last_layer_g.fill_(1.0)
        if norm_last_layer:
            self.last_layer_g.requires_grad_(False)
        # torch types this public method loosely; the hook's signature is checked below.
        self.register_load_state_dict_pre_hook(_legacy_keys_pre_hook)  # type: ignore[no-untyped-call]

    @property
    def last_layer_g(self) -> nn.Parameter:
        """The last layer's per-prototype norm ``g``, shape ``(out_dim, 1)``."""
        g: nn.Parameter = self.last_layer.parametrizations.weight.original0
        return g

    @property
    def last_layer_v(self) -> nn.Parameter:
        """The last layer's direction ``v``, shape ``(out_dim, bottleneck_dim)``."""
        v: nn.Parameter = self.last_layer.parametrizations.weight.original1
        return v

    def forward(self, x: Tensor) -> Tensor:
        """Project features to prototype scores.

        Args:
            x: ``(N, in_dim)`` backbone features (e.g. CLS tokens).

        Returns:
            ``(N, out_dim)`` unnormalised prototype scores (logits for the DINO loss).
        """
        x = self.mlp(x)
        x = F.normalize(x, p=2, dim=-1, eps=NORMALIZE_EPS)
        out: Tensor = self.last_layer(x)
        return out


def _build_mlp(
    in_dim: int, hidden_dim: int, bottleneck_dim: int, n_layers: int, use_bn: bool
) -> nn.Sequential:
    if n_layers == 1:
        return nn.Sequential(nn.Linear(in_dim, bottleneck_dim))
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (n_layers - 1)
    for d_in, d_out in itertools.pairwise(dims):
        layers.append(nn.Linear(d_in, d_out))
        if use_bn:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.GELU())
    layers.append(nn.Linear(hidden_dim, bottleneck_dim))
    return nn.Sequential(*layers)


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _rename_last_layer_keys(
    state_dict: Mapping[str, Any], mapping: Mapping[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        new_key = key
        for old_leaf, new_leaf in mapping.items():
            suffix = f"{_LAST_LAYER}.{old_leaf}"
            if key == suffix or key.endswith(f".{suffix}"):
                new_key = key[: -len(old_leaf)] + new_leaf
                break
        out[new_key] = value
    return out


def convert_legacy_head_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename old weight-norm keys to the layout :class:`DINOHead` uses.

    ``<prefix>last_layer.weight_g`` -> ``<prefix>last_layer.parametrizations.weight.original0``
    and ``<prefix>last_layer.weight_v`` -> ``<prefix>last_layer.parametrizations.weight.original1``
    (the prefix may be empty or e.g. ``"module.head."``). Other keys and all values are kept
    as they are; the input is not modified.

    Args:
        state_dict: A head (or full-model) state dict, in either layout.

    Returns:
        A new dict in the modern layout.
    """
    return _rename_last_layer_keys(state_dict, {_LEGACY_G: _MODERN_G, _LEGACY_V: _MODERN_V})


def to_legacy_head_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`convert_legacy_head_state_dict`: write the reference's key layout.

    Args:
        state_dict: A head (or full-model) state dict, in either layout.

    Returns:
        A new dict with ``last_layer.weight_g`` / ``last_layer.weight_v`` keys, as the
        official DINO checkpoints have them.
    """
    return _rename_last_layer_keys(state_dict, {_MODERN_G: _LEGACY_G, _MODERN_V: _LEGACY_V})


@dataclass(frozen=True)
class HeadShape:
    """The shape and options of the DINO head a state dict holds (see :func:`head_shape`)."""

    out_dim: int
    bottleneck_dim: int
    hidden_dim: int
    n_layers: int
    use_bn: bool
    norm_last_layer: bool


def head_shape(state_dict: Mapping[str, Tensor]) -> HeadShape:
    """Read a :class:`DINOHead`'s arguments from its state dict (either key layout).

    Raises:
        ValueError: the keys are not those of a DINO head.
    """
    state = convert_legacy_head_state_dict(state_dict)
    g = state.get(f"{_LAST_LAYER}.{_MODERN_G}")
    v = state.get(f"{_LAST_LAYER}.{_MODERN_V}")
    layers = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"mlp\.(\d+)\.weight", k)))
    if g is None or v is None or not layers:
        raise ValueError(f"unrecognised DINO head keys: {sorted(state)[:8]}")
    weights = [state[f"mlp.{i}.weight"] for i in layers]
    linear = [w for w in weights if w.ndim == 2]  # BatchNorm weights are 1-D
    out_dim, bottleneck = v.shape
    return HeadShape(
        out_dim=int(out_dim),
        bottleneck_dim=int(bottleneck),
        hidden_dim=int(linear[0].shape[0]) if len(linear) > 1 else HIDDEN_DIM,
        n_layers=len(linear),
        use_bn=len(linear) < len(weights),
        # A weight-norm scale left at 1 everywhere means the head was trained with
        # norm_last_layer (g frozen); otherwise g was learned and stays trainable.
        norm_last_layer=bool(g.eq(1).all()),
    )


def _legacy_keys_pre_hook(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: dict[str, Any],
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """Rename this head's legacy keys in place before its children load them."""
    del module, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    for legacy, modern in ((_LEGACY_G, _MODERN_G), (_LEGACY_V, _MODERN_V)):
        old_key = f"{prefix}{_LAST_LAYER}.{legacy}"
        if old_key in state_dict:
            state_dict[f"{prefix}{_LAST_LAYER}.{modern}"] = state_dict.pop(old_key)
            logger.debug("DINOHead: loaded legacy weight-norm key %s", old_key)


def cancel_last_layer_gradients(module: nn.Module) -> None:
    """Drop the gradients of every ``last_layer`` parameter (reference
    ``cancel_gradients_last_layer``).

    Call between ``backward()`` and ``optimizer.step()`` during the first epoch(s): the
    reference keeps the prototypes fixed for ``freeze_last_layer = 1`` epoch for stability.

    Args:
        module: A head, or any model containing one (DDP-wrapped is fine).
    """
    for name, param in module.named_parameters():
        if _LAST_LAYER in name.split("."):
            param.grad = None
