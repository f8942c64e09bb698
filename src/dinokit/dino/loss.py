"""DINO self-distillation loss with teacher centring and sharpening.

Follows ``DINOLoss`` in facebookresearch/dino ``main_dino.py`` (Caron et al., 2021,
"Emerging Properties in Self-Supervised Vision Transformers", arXiv:2104.14294, Algorithm 1):
the student's softmax at temperature ``student_temp`` is trained to match the teacher's
centred, sharpened softmax, over every (teacher global view, student view) pair except
same-view pairs; the centre is an EMA of the teacher's global-view outputs.

Defects of the reference fixed here:

* The teacher temperature is a function of the (possibly fractional) epoch, clamped, instead
  of an array lookup that raises ``IndexError`` when ``n_epochs`` < warm-up epochs or past
  the last epoch. At integer epochs it equals the reference's ``np.linspace`` schedule.
* ``dist.all_reduce`` is only called when a process group is initialised (the reference
  calls it unconditionally and crashes in a single process).
* All softmax / centring / loss math is float32 (autocast disabled, inputs cast), so bf16 or
  fp16 logits and centre sums neither lose precision nor overflow.
* Inputs are validated with explicit messages; the number of crops is inferred from shapes.
* Every (teacher, student) pair is summed without recomputing the student log-softmax.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .defaults import (
    CENTER_MOMENTUM,
    N_GLOBAL_CROPS,
    STUDENT_TEMP,
    TEACHER_TEMP,
    WARMUP_TEACHER_TEMP,
    WARMUP_TEACHER_TEMP_EPOCHS,
)

logger = logging.getLogger(__name__)

#: Sinkhorn-Knopp iterations of DINOv2's ``sinkhorn_knopp_teacher`` (and SwAV's).
DEFAULT_SINKHORN_ITERATIONS = 3
CENTERINGS = ("center", "sinkhorn")
"""Teacher centring methods: DINO's EMA centre, or DINOv2's Sinkhorn-Knopp."""


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temp: float, *, iterations: int = 3) -> Tensor:
    """Balanced soft assignment of samples to prototypes (Sinkhorn-Knopp).

    The teacher targets of DINOv2 (Oquab et al., 2023, arXiv:2304.07193) and SwAV (Caron et
    al., 2020, arXiv:2006.09882): ``exp(logits / temp)`` is rescaled, alternately per
    prototype and per sample, towards a matrix in which every prototype gets the same total
    mass and every sample's row sums to 1. Under a process group the sums run over the
    samples of every process.

    Args:
        logits: ``(B, K)`` teacher logits of this process.
        temp: Teacher temperature.
        iterations: Rescaling rounds (3 in DINOv2 and SwAV).

    Returns:
        ``(B, K)`` float32 targets; each row sums to 1.
    """
    distributed = dist.is_available() and dist.is_initialized()
    # float64: after subtracting the global max, a sample whose logits all sit far below it
    # would underflow to an all-zero row in float32 (and turn into NaN when normalised).
    scores = logits.double() / temp
    # Subtracting one global constant leaves every rescaling unchanged and avoids overflow.
    top = scores.max().reshape(1)
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(scores - top).t()  # (K, B)
    n_samples = torch.tensor(float(q.shape[1]), device=q.device, dtype=q.dtype)
    total = q.sum().reshape(1)
    if distributed:
        dist.all_reduce(n_samples)
        dist.all_reduce(total)
    n_prototypes = q.shape[0]
    q = q / total
    for _ in range(iterations):
        per_prototype = q.sum(dim=1, keepdim=True)
        if distributed:
            dist.all_reduce(per_prototype)
        q = q / per_prototype.clamp_min(torch.finfo(q.dtype).tiny) / n_prototypes
        q = q / q.sum(dim=0, keepdim=True) / n_samples
    return (q * n_samples).t().float()


def teacher_temperature(
    epoch: float, *, warmup_teacher_temp: float, teacher_temp: float, warmup_epochs: int
) -> float:
    """Teacher temperature at ``epoch``: linear warm-up, then constant.

    Equals the reference's ``np.linspace(warmup_teacher_temp, teacher_temp, warmup_epochs)``
    at integer epochs ``< warmup_epochs`` (so ``teacher_temp`` is reached at epoch
    ``warmup_epochs - 1``) and ``teacher_temp`` afterwards; fractional epochs interpolate.
    Never fails for epochs past the end of the run or runs shorter than the warm-up.

    Args:
        epoch: Current epoch, ``>= 0``; may be fractional (``epoch + step / steps_per_epoch``).
        warmup_teacher_temp: Temperature at epoch 0.
        teacher_temp: Temperature after the warm-up.
        warmup_epochs: Length of the warm-up in epochs (``0``: no warm-up).

    Returns:
        The temperature.
    """
    if warmup_epochs <= 0:
        return teacher_temp
    progress = min(max(epoch, 0.0) / max(warmup_epochs - 1, 1), 1.0)
    return warmup_teacher_temp + (teacher_temp - warmup_teacher_temp) * progress


class DINOLoss(nn.Module):
    """Cross-entropy between the centred, sharpened teacher and the student, over views.

    The student output holds ``n_crops`` views of a batch of ``B`` images, concatenated view
    after view with the ``n_global_crops`` global views first; the teacher output holds the
    global views only. For teacher view ``t`` and student view ``s``::

        H(t, s) = mean_b sum_k -softmax((teacher_t - center) / T_t) * log_softmax(student_s / T_s)

    and the loss is the mean of ``H`` over all pairs with ``s != t``.

    After each call the centre is updated (no gradient) from the teacher outputs:
    ``center = m * center + (1 - m) * mean(teacher_output)``, the mean all-reduced across
    processes when a process group is initialised.

    Monitoring: :attr:`last_stats` gives, for the last call, the loss, the mean entropy of the
    teacher distribution and ``KL(teacher || student)`` (averaged like the loss). Collapse
    shows as a loss stuck at ``ln(out_dim)`` with the entropy at ``ln(out_dim)`` (uniform
    collapse) or as an entropy going to 0 (one prototype wins); see
    :func:`dinokit.dino.collapse.collapse_signature`.

    Args:
        out_dim: Number of prototypes ``K``, the head's ``out_dim`` (not the backbone width).
        n_global_crops: Number of global views in the teacher output (the reference's
            ``ncrops`` counts *all* views; here the total is inferred from shapes).
        warmup_teacher_temp: Teacher temperature at epoch 0.
        teacher_temp: Teacher temperature after the warm-up.
        warmup_teacher_temp_epochs: Length of the teacher temperature warm-up in epochs.
        n_epochs: Length of the run in epochs (only checked against the warm-up).
        student_temp: Student temperature.
        center_momentum: EMA momentum of the centre.
        n_crops: Total number of views per image, to check against the shapes; ``None``
            infers it as ``student rows / (teacher rows / n_global_crops)``.
        centering: ``"center"`` (DINO: subtract the EMA centre, then softmax) or
            ``"sinkhorn"`` (DINOv2: Sinkhorn-Knopp over the batch; the centre is still
            tracked for monitoring and for switching back).
        sinkhorn_iterations: Rescaling rounds of the Sinkhorn-Knopp centring.
    """

    center: Tensor

    def __init__(
        self,
        out_dim: int,
        *,
        n_global_crops: int = N_GLOBAL_CROPS,
        warmup_teacher_temp: float = WARMUP_TEACHER_TEMP,
        teacher_temp: float = TEACHER_TEMP,
        warmup_teacher_temp_epochs: int = WARMUP_TEACHER_TEMP_EPOCHS,
        n_epochs: int,
        student_temp: float = STUDENT_TEMP,
        center_momentum: float = CENTER_MOMENTUM,
        n_crops: int | None = None,
        centering: str = "center",
        sinkhorn_iterations: int = DEFAULT_SINKHORN_ITERATIONS,
    ) -> None:
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f"DINOLoss: centering must be one of {CENTERINGS}, not {centering!r}")
        if sinkhorn_iterations < 1:
            raise ValueError("DINOLoss: sinkhorn_iterations must be >= 1")
        if out_dim < 1:
            raise ValueError(f"DINOLoss: out_dim must be >= 1, got {out_dim}")
        if n_global_crops < 1:
            raise ValueError(f"DINOLoss: n_global_crops must be >= 1, got {n_global_crops}")
        if n_crops is not None and n_crops < max(n_global_crops, 2):
            raise ValueError(
                f"DINOLoss: n_crops={n_crops} must be >= n_global_crops={n_global_crops} and >= 2"
            )
        if min(warmup_teacher_temp, teacher_temp, student_temp) <= 0:
            raise ValueError("DINOLoss: temperatures must be > 0")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"DINOLoss: center_momentum must be in [0, 1], got {center_momentum}")
        if warmup_teacher_temp_epochs < 0 or n_epochs < 1:
            raise ValueError("DINOLoss: need warmup_teacher_temp_epochs >= 0 and n_epochs >= 1")
        if warmup_teacher_temp_epochs > n_epochs:
            logger.warning(
                "DINOLoss: teacher temperature warm-up (%d epochs) is longer than the run "
                "(%d epochs); the teacher temperature stays below teacher_temp=%g",
                warmup_teacher_temp_epochs,
                n_epochs,
                teacher_temp,
            )
        self.out_dim = out_dim
        self.n_global_crops = n_global_crops
        self.n_crops = n_crops
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.n_epochs = n_epochs
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        self.register_buffer("center", torch.zeros(1, out_dim))
        self._last_stats: dict[str, Tensor] = {}
        self._last_temp = teacher_temp

    def teacher_temp_at(self, epoch: float) -> float:
        """Teacher temperature at ``epoch`` (see :func:`teacher_temperature`)."""
        return teacher_temperature(
            epoch,
            warmup_teacher_temp=self.warmup_teacher_temp,
            teacher_temp=self.teacher_temp,
            warmup_epochs=self.warmup_teacher_temp_epochs,
        )

    def forward(self, student_output: Tensor, teacher_output: Tensor, epoch: float) -> Tensor:
        """Compute the loss, then update the centre.

        Args:
            student_output: ``(n_crops * B, K)`` student logits, view after view, global
                views first. Any float dtype; computed in float32.
            teacher_output: ``(n_global_crops * B, K)`` teacher logits for the global views,
                in the same view order. Treated as a constant (detached).
            epoch: Current epoch, possibly fractional, for the teacher temperature.

        Returns:
            Scalar float32 loss.
        """
        n_crops, batch = self._check_shapes(student_output, teacher_output)
        n_global = self.n_global_crops
        temp = self.teacher_temp_at(epoch)
        with torch.autocast(student_output.device.type, enabled=False):
            student = student_output.float() / self.student_temp
            teacher = teacher_output.detach().float()
            student_logp = F.log_softmax(student, dim=-1).view(n_crops, batch, self.out_dim)
            if self.centering == "sinkhorn":
                targets = sinkhorn_knopp(teacher, temp, iterations=self.sinkhorn_iterations)
                teacher_logp = targets.clamp_min(torch.finfo(targets.dtype).tiny).log()
                teacher_p = targets.view(n_global, batch, self.out_dim)
            else:
                teacher_logp = F.log_softmax((teacher - self.center) / temp, dim=-1)
                teacher_p = teacher_logp.exp().view(n_global, batch, self.out_dim)
            # Sum over all (teacher, student) pairs, then remove the same-view pairs; this
            # computes each student log-softmax once instead of once per teacher view.
            all_pairs = -(teacher_p.sum(0) * student_logp.sum(0)).sum()
            n_same = min(n_global, n_crops)
            same_view = -(teacher_p[:n_same] * student_logp[:n_same]).sum()
            n_terms = n_global * n_crops - n_same
            loss = (all_pairs - same_view) / (batch * n_terms)
            with torch.no_grad():
                entropy = -(teacher_p * teacher_logp.view_as(teacher_p)).sum(-1).mean()
                self._last_stats = {
                    "loss": loss.detach(),
                    "teacher_entropy": entropy,
                    # Every teacher view is paired with the same number of student views,
                    # so the pair-averaged KL is the loss minus the mean teacher entropy.
                    "kl": loss.detach() - entropy,
                }
                self._last_temp = temp
            self.update_center(teacher)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_output: Tensor) -> None:
        """EMA-update the centre from teacher logits.

        Args:
            teacher_output: ``(n_global_crops * B, K)`` teacher logits of this process.
        """
        teacher = teacher_output.detach().float()
        batch_center = teacher.sum(dim=0, keepdim=True)
        world_size = 1
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            world_size = dist.get_world_size()
        batch_center = batch_center / (teacher.shape[0] * world_size)
        self.center.mul_(self.center_momentum).add_(
            batch_center.to(self.center.dtype), alpha=1.0 - self.center_momentum
        )

    @property
    def last_stats(self) -> dict[str, float]:
        """Statistics of the last call, as floats (reading them syncs with the device).

        Keys: ``loss``; ``teacher_entropy`` (mean entropy in nats of the centred, sharpened
        teacher distribution; ``ln(out_dim)`` is uniform, 0 is one-hot); ``kl`` (mean
        ``KL(teacher || student)`` over the loss's pairs); ``teacher_temp``. Empty before the
        first call.
        """
        if not self._last_stats:
            return {}
        stats = {key: float(value.item()) for key, value in self._last_stats.items()}
        stats["teacher_temp"] = self._last_temp
        return stats

    def _check_shapes(self, student_output: Tensor, teacher_output: Tensor) -> tuple[int, int]:
        if student_output.ndim != 2 or teacher_output.ndim != 2:
            raise ValueError(
                "DINOLoss: expected 2-D (rows, out_dim) outputs, got student "
                f"{tuple(student_output.shape)} and teacher {tuple(teacher_output.shape)}"
            )
        for name, out in (("student", student_output), ("teacher", teacher_output)):
            if out.shape[1] != self.out_dim:
                raise ValueError(
                    f"DINOLoss: {name} output has {out.shape[1]} columns but out_dim="
                    f"{self.out_dim} (out_dim is the head's number of prototypes)"
                )
        n_teacher, n_student = teacher_output.shape[0], student_output.shape[0]
        if n_teacher == 0 or n_teacher % self.n_global_crops:
            raise ValueError(
                f"DINOLoss: teacher rows ({n_teacher}) must be a positive multiple of "
                f"n_global_crops ({self.n_global_crops})"
            )
        batch = n_teacher // self.n_global_crops
        if n_student % batch:
            raise ValueError(
                f"DINOLoss: student rows ({n_student}) must be a multiple of the batch size "
                f"{batch} (teacher rows {n_teacher} / n_global_crops {self.n_global_crops})"
            )
        n_crops = n_student // batch
        if self.n_crops is not None and n_crops != self.n_crops:
            raise ValueError(
                f"DINOLoss: expected {self.n_crops} crops per image, the shapes give {n_crops} "
                f"(student rows {n_student}, batch {batch})"
            )
        if n_crops < self.n_global_crops or n_crops < 2:
            raise ValueError(
                f"DINOLoss: the student must see the {self.n_global_crops} global views and at "
                f"least 2 views in all; the shapes give {n_crops} views per image"
            )
        return n_crops, batch
