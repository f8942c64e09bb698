"""The DINO teacher: an exponential moving average (EMA) of the student.

Follows facebookresearch/dino ``main_dino.py`` (Caron et al., 2021, arXiv:2104.14294): the
teacher has the student's architecture (backbone *and* head), starts from the student's
weights, receives no gradients and is updated after each step with
``teacher = m * teacher + (1 - m) * student`` (momentum ``m`` from
:func:`dinokit.dino.schedules.dino_schedules`).

Fixes relative to common re-implementations:

* :func:`make_teacher` deep-copies the whole student, so the teacher head equals the
  student head (lightly's example builds a fresh, randomly initialised teacher head).
* Stochastic depth is student-only, as in the reference (whose teacher is built with the
  default ``drop_path_rate=0``): the copy's drop-path modules are replaced by identities.
* Parameters are matched by name (a mismatch is an error, not a silent ``zip``) and updated
  with fused ``torch._foreach_*`` ops.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: Class names of stochastic-depth modules (timm, DINO and DINOv2 ``DropPath``, torchvision
#: ``StochasticDepth``). All are the identity when their drop probability is 0.
STOCHASTIC_DEPTH_CLASS_NAMES = frozenset({"DropPath", "StochasticDepth"})
#: DINOv2 blocks implement batch-level stochastic depth with this float attribute.
_SAMPLE_DROP_RATIO_ATTR = "sample_drop_ratio"


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the bare module inside DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
            continue
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def disable_drop_path(model: nn.Module) -> int:
    """Turn off stochastic depth in ``model``, in place.

    Replaces every ``DropPath`` / ``StochasticDepth`` submodule (by class name, so timm's,
    DINO's and torchvision's all match) with ``nn.Identity`` and sets DINOv2's
    ``sample_drop_ratio`` attributes to 0.

    Args:
        model: The module to modify (e.g. a teacher copy).

    Returns:
        The number of submodules changed.
    """
    changed = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if any(cls.__name__ in STOCHASTIC_DEPTH_CLASS_NAMES for cls in type(child).__mro__):
                setattr(module, name, nn.Identity())
                changed += 1
        ratio = getattr(module, _SAMPLE_DROP_RATIO_ATTR, None)
        if isinstance(ratio, float) and ratio > 0.0:
            setattr(module, _SAMPLE_DROP_RATIO_ATTR, 0.0)
            changed += 1
    return changed


def make_teacher(student: nn.Module, *, drop_path: bool = False) -> nn.Module:
    """Build the teacher as an exact copy of the student (backbone and head).

    Args:
        student: The student network (backbone + head), possibly DDP/compile-wrapped (the
            copy is of the bare module).
        drop_path: Keep the student's stochastic depth in the teacher. The reference's
            teacher has none, hence the default ``False``.

    Returns:
        A deep copy with ``requires_grad=False`` on every parameter, in the student's
        train/eval mode, on the student's devices.
    """
    teacher = copy.deepcopy(unwrap_model(student))
    if not drop_path:
        n_changed = disable_drop_path(teacher)
        if n_changed:
            logger.debug("make_teacher: disabled stochastic depth in %d modules", n_changed)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """EMA step ``teacher = momentum * teacher + (1 - momentum) * student``, in place.

    All parameters are updated, trainable or not (as in the reference); buffers are not.

    Args:
        student: The student (DDP/compile wrappers are unwrapped).
        teacher: The teacher, with the same parameter names and shapes.
        momentum: EMA momentum in ``[0, 1]``; ``1.0`` leaves the teacher unchanged.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"update_teacher: momentum must be in [0, 1], got {momentum}")
    if momentum == 1.0:
        return
    student_params = list(unwrap_model(student).named_parameters())
    teacher_params = list(unwrap_model(teacher).named_parameters())
    if [n for n, _ in student_params] != [n for n, _ in teacher_params]:
        s_names = {n for n, _ in student_params}
        t_names = {n for n, _ in teacher_params}
        raise ValueError(
            "update_teacher: student and teacher parameters differ: only in student "
            f"{sorted(s_names - t_names)}, only in teacher {sorted(t_names - s_names)}"
            + ("" if s_names != t_names else " (same names, different order)")
        )
    t_tensors: list[Tensor] = []
    s_tensors: list[Tensor] = []
    for (name, s_param), (_, t_param) in zip(student_params, teacher_params, strict=True):
        if s_param.shape != t_param.shape:
            raise ValueError(
                f"update_teacher: shape mismatch for {name}: student {tuple(s_param.shape)}, "
                f"teacher {tuple(t_param.shape)}"
            )
        t_tensors.append(t_param)
        s_tensors.append(s_param.detach())
    torch._foreach_mul_(t_tensors, momentum)
    torch._foreach_add_(t_tensors, s_tensors, alpha=1.0 - momentum)
