"""Collapse signatures of DINO training, read from the loss's monitoring statistics.

DINO avoids collapse by balancing centring (pushes the teacher towards uniform) against
sharpening (pushes it towards one-hot) (Caron et al., 2021, arXiv:2104.14294, section
"Avoiding collapse": collapse shows as the teacher entropy going to ``ln(K)`` or to 0, with
``KL(teacher || student)`` going to 0). This module names those signatures so the training
loop can warn about them.
"""

from __future__ import annotations

import math

#: Collapse heuristics (see :func:`collapse_signature`). A teacher whose mean entropy is below
#: this many nats puts nearly all its mass on one prototype (one-hot collapse).
COLLAPSE_MIN_ENTROPY = 0.05
#: Relative tolerance for "loss ~= ln(K)" and "entropy ~= ln(K)" (uniform collapse).
COLLAPSE_UNIFORM_RTOL = 0.02


def collapse_signature(
    stats: dict[str, float],
    out_dim: int,
    *,
    min_entropy: float = COLLAPSE_MIN_ENTROPY,
    rtol: float = COLLAPSE_UNIFORM_RTOL,
) -> str | None:
    """Name the collapse signature shown by one step's :attr:`DINOLoss.last_stats`, if any.

    One step is a hint, not proof: warn when it persists over many steps.

    Args:
        stats: ``DINOLoss.last_stats``.
        out_dim: Number of prototypes ``K``.
        min_entropy: Teacher entropy (nats) below which the teacher is nearly one-hot.
        rtol: Relative tolerance for "equals ``ln(K)``".

    Returns:
        ``"uniform"`` (loss and teacher entropy at ``ln(K)``: every output is the same flat
        distribution), ``"one-hot"`` (teacher entropy near 0: one prototype wins), or ``None``.
    """
    if not stats:
        return None
    log_k = math.log(out_dim)
    entropy = stats["teacher_entropy"]
    at_log_k = out_dim > 1 and math.isclose(stats["loss"], log_k, rel_tol=rtol)
    if at_log_k and math.isclose(entropy, log_k, rel_tol=rtol):
        return "uniform"
    if entropy < min_entropy:
        return "one-hot"
    return None
