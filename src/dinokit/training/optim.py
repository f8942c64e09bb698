"""AdamW parameter groups, layer-wise lr decay, backbone freezing and gradient clipping.

Follows facebookresearch/dino (``utils.get_params_groups``, ``utils.clip_gradients`` and the
per-step schedule update in ``main_dino.py``; Caron et al., 2021, arXiv:2104.14294) for the
weight-decay split and the per-parameter clipping, and BEiT / DINOv2 fine-tuning
(``get_vit_lr_decay_rate`` in facebookresearch/dinov2) for layer-wise lr decay.

How the training loop uses it::

    groups = param_groups(student, layer_decay=0.75, freeze_blocks=2)   # backbone trainable
    optimizer = build_adamw(groups, device=device)
    freeze_backbone(student, True, freeze_blocks=2)     # head warm-up
    for step ...:
        if step == warmup_end: freeze_backbone(student, False, freeze_blocks=2)
        apply_schedules(optimizer, lr=lr_sched[step], weight_decay=wd_sched[step])
        ... backward; scaler.unscale_(optimizer); clip_gradients(student, 3.0); step

Head warm-up toggles ``requires_grad`` instead of rebuilding the optimizer: the groups are
built once with every eventually-trainable parameter, and while the backbone is frozen its
gradients stay ``None``, which AdamW skips (no update, no weight decay, moments untouched).
Build the groups *before* freezing: parameters with ``requires_grad=False`` are never put in
a group. Under DDP, mind two things: DDP only synchronises parameters that required grad
when it was constructed (wrap the student *before* freezing, or wrap it again after
unfreezing, else unfrozen gradients are silently never all-reduced), and parameters that get
no gradient during the warm-up need ``find_unused_parameters=True`` on that wrapper.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor, nn

from ..dino.ema import unwrap_model

logger = logging.getLogger(__name__)

#: Added to the gradient norm before dividing, as in the reference ``clip_gradients``.
CLIP_EPS = 1e-6
#: Parameters of the ViT (names relative to the timm ``VisionTransformer``) that form the
#: embedding stage: layer 0 for lr decay, frozen whenever any block is frozen.
EMBEDDING_PREFIXES = (
    "patch_embed.",
    "cls_token",
    "pos_embed",
    "reg_token",
    "mask_token",
    "norm_pre.",
)


def _vit_parameters(student: nn.Module, freeze_blocks: int) -> tuple[dict[int, str], int]:
    """Names (relative to the ViT, by parameter id) and depth of the ViT inside
    ``student.backbone`` (a dinokit ``Backbone`` or a bare timm ViT), ``freeze_blocks`` checked.
    """
    backbone = getattr(unwrap_model(student), "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError("expected a student with a `.backbone` module (and a `.head`)")
    vit = getattr(backbone, "vit", backbone)
    blocks = getattr(vit, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList):
        raise ValueError(f"{type(vit).__name__} has no `.blocks`: not a ViT backbone")
    depth = len(blocks)
    if not 0 <= freeze_blocks <= depth:
        raise ValueError(f"freeze_blocks must be in [0, {depth}] (the depth), got {freeze_blocks}")
    return {id(p): n for n, p in vit.named_parameters()}, depth


def vit_layer_id(name: str, depth: int) -> int:
    """Layer index of a ViT parameter for layer-wise lr decay (BEiT / DINOv2 convention).

    Args:
        name: Parameter name relative to the ViT (``blocks.3.attn.qkv.weight``, ``cls_token``).
        depth: Number of transformer blocks ``L``.

    Returns:
        0 for the embedding stage (patch embedding, CLS / register / mask tokens, position
        embedding), ``i + 1`` for block ``i``, ``L + 1`` for everything after the blocks.
    """
    if name.startswith(EMBEDDING_PREFIXES):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def _is_permanently_frozen(vit_name: str, freeze_blocks: int, depth: int) -> bool:
    if freeze_blocks <= 0:
        return False
    return vit_layer_id(vit_name, depth) <= freeze_blocks


def _no_weight_decay(name: str, param: Tensor) -> bool:
    # The reference rule, exactly: biases and every 1-D tensor (norms, LayerScale gammas).
    # cls_token / pos_embed / reg_token are 3-D and therefore regularised, as in the reference.
    return name.endswith(".bias") or len(param.shape) == 1


def param_groups(
    student: nn.Module,
    *,
    layer_decay: float | None = None,
    freeze_blocks: int = 0,
    backbone_lr_scale: float = 1.0,
    head_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """AdamW parameter groups for a DINO student (``.backbone`` ViT and ``.head``).

    Each group carries ``lr_scale`` and ``weight_decay_scale`` (1.0 or 0.0), which
    :func:`apply_schedules` multiplies with the scheduled lr and weight decay, and a ``name``
    for logging. Biases and 1-D parameters get no weight decay (reference
    ``get_params_groups``). Parameters with ``requires_grad=False`` (e.g. the head's fixed
    weight-norm ``g``) are left out.

    Args:
        student: Module with ``.backbone`` (a dinokit ``Backbone`` or a timm ViT) and
            ``.head``; DDP / ``torch.compile`` wrappers are unwrapped.
        layer_decay: Layer-wise lr decay factor ``d`` (e.g. 0.75), or None for none. Block
            ``i`` of ``L`` gets ``d ** (L - i)``, the embedding stage ``d ** (L + 1)``, the final
            norm and the head 1.
        freeze_blocks: Freeze the embedding stage and the first N blocks (``requires_grad``
            set to False here) and leave them out of the groups.
        backbone_lr_scale: Extra lr factor for every backbone parameter (a low backbone lr
            protects pretrained features).
        head_lr_scale: Extra lr factor for the head (and any parameter outside the backbone).

    Returns:
        Groups for ``torch.optim.AdamW``; decay groups have ``weight_decay_scale=1.0``,
        the others ``0.0`` and an initial ``weight_decay`` of 0.
    """
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    vit_names, depth = _vit_parameters(student, freeze_blocks)
    groups: dict[tuple[str, float, bool], list[nn.Parameter]] = defaultdict(list)
    n_frozen = 0
    for name, param in unwrap_model(student).named_parameters():
        vit_name = vit_names.get(id(param))
        if vit_name is not None and _is_permanently_frozen(vit_name, freeze_blocks, depth):
            param.requires_grad_(False)
            n_frozen += 1
            continue
        if not param.requires_grad:
            continue
        if vit_name is None:
            part, scale = "head", head_lr_scale
        else:
            part, scale = "backbone", backbone_lr_scale
            if layer_decay is not None:
                layer = vit_layer_id(vit_name, depth)
                part = f"backbone.layer{layer}"
                scale *= layer_decay ** (depth + 1 - layer)
        groups[(part, scale, not _no_weight_decay(name, param))].append(param)

    if not any(part.startswith("backbone") for part, _, _ in groups):
        logger.warning("no trainable backbone parameter in the optimizer groups")
    logger.info(
        "optimizer: %d groups, %d trainable tensors, %d frozen by freeze_blocks=%d",
        len(groups),
        sum(len(p) for p in groups.values()),
        n_frozen,
        freeze_blocks,
    )
    return [
        {
            "params": params,
            "name": f"{part}.{'decay' if decay else 'no_decay'}",
            "lr_scale": scale,
            "weight_decay_scale": 1.0 if decay else 0.0,
            **({} if decay else {"weight_decay": 0.0}),
        }
        for (part, scale, decay), params in groups.items()
    ]


def freeze_backbone(student: nn.Module, frozen: bool, *, freeze_blocks: int = 0) -> int:
    """Freeze or unfreeze the student's backbone (head warm-up), keeping permanent freezes.

    ``frozen=True`` sets ``requires_grad=False`` on every backbone parameter.
    ``frozen=False`` makes them trainable again, except the embedding stage and the first
    ``freeze_blocks`` blocks (pass the value given to :func:`param_groups`). The head is
    never touched. No optimizer rebuild is needed (see the module docstring).

    Args:
        student: Module with ``.backbone`` and ``.head``.
        frozen: True to freeze the whole backbone, False to unfreeze it.
        freeze_blocks: Blocks that stay frozen when unfreezing.

    Returns:
        The number of parameter tensors whose ``requires_grad`` changed.
    """
    vit_names, depth = _vit_parameters(student, freeze_blocks)
    backbone = unwrap_model(student).backbone
    assert isinstance(backbone, nn.Module)
    changed = 0
    for param in backbone.parameters():
        vit_name = vit_names.get(id(param), "")
        trainable = not frozen and not _is_permanently_frozen(vit_name, freeze_blocks, depth)
        if param.requires_grad != trainable:
            param.requires_grad_(trainable)
            param.grad = None
            changed += 1
    logger.info("backbone %s (%d tensors changed)", "frozen" if frozen else "unfrozen", changed)
    return changed


def build_adamw(
    groups: list[dict[str, Any]],
    *,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """The reference optimizer: AdamW with lr and weight decay set per step by schedules.

    Args:
        groups: From :func:`param_groups`.
        device: Where the parameters live; CUDA uses the fused kernel, others ``foreach``.
        betas: Adam betas (reference: PyTorch defaults).
        eps: Adam epsilon.

    Returns:
        The optimizer, lr 0 until :func:`apply_schedules` sets it.
    """
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        groups, lr=0.0, betas=betas, eps=eps, fused=fused or None, foreach=None if fused else True
    )


def apply_schedules(optimizer: torch.optim.Optimizer, *, lr: float, weight_decay: float) -> None:
    """Set this step's lr and weight decay on every group, scaled per group.

    ``group["lr"] = lr * group["lr_scale"]`` and
    ``group["weight_decay"] = weight_decay * group["weight_decay_scale"]``.

    Raises:
        KeyError: a group lacks the scales (it was not built by :func:`param_groups`).
    """
    for group in optimizer.param_groups:
        try:
            group["lr"] = lr * group["lr_scale"]
            group["weight_decay"] = weight_decay * group["weight_decay_scale"]
        except KeyError as exc:
            raise KeyError(
                f"optimizer group {group.get('name', '?')!r} has no {exc}: build the groups "
                "with dinokit.training.optim.param_groups"
            ) from None


@torch.no_grad()
def clip_gradients(model: nn.Module, clip: float) -> list[float]:
    """Clip each parameter's gradient to L2 norm ``clip``, separately (reference semantics).

    For every parameter with a gradient: ``coef = clip / (||grad||_2 + 1e-6)`` and, when
    ``coef < 1``, ``grad *= coef``. This is *not* ``clip_grad_norm_`` (one global norm).
    Vectorised with ``torch._foreach_norm`` / ``_foreach_mul_``; multiplying by exactly 1.0
    where ``coef >= 1`` leaves those gradients bit-identical. Unscale fp16 gradients first
    (``scaler.unscale_(optimizer)``).

    Args:
        model: The student (any module; parameters without gradients are skipped).
        clip: Maximum per-parameter gradient norm (reference: 3.0).

    Returns:
        The gradient norms before clipping, in ``named_parameters`` order.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    by_kind: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, g in enumerate(grads):
        by_kind[(g.device, g.dtype)].append(i)
    norms: list[float] = [0.0] * len(grads)
    for indices in by_kind.values():
        group = [grads[i] for i in indices]
        group_norms = torch.stack(torch._foreach_norm(group, 2))
        coefs = (clip / (group_norms + CLIP_EPS)).clamp_(max=1.0)
        torch._foreach_mul_(group, list(coefs.unbind()))
        for i, n in zip(indices, group_norms.tolist(), strict=True):
            norms[i] = n
    return norms
