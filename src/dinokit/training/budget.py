"""A run's length as the user states it: a wall-clock budget (``15m``, ``2h``) or steps.

``--budget 500`` is 500 optimizer steps. ``--budget 15m`` is 15 minutes from the start of the
command to the exported weights: the run measures how long its steps take on this machine
(:mod:`dinokit.training.probe`), turns the time into a number of steps before the first one,
and every schedule spans those steps. While it trains, :class:`BudgetClock` compares the
clock with the plan (its epoch ends, with their checkpoints and evaluations, take time too)
and, when the plan is off by more than :data:`REFIT_TOLERANCE`, gives a new length; the run
then stretches what is left of its schedules over it (:func:`dinokit.dino.respan`). A
resumed run continues towards the same budget: the time spent before the interruption is
recorded in the checkpoint and counts.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

#: A refit changes the run's length only when the plan is off by more than this fraction of
#: the steps left (and :data:`MIN_REFIT_STEPS`): near the end, a few steps.
REFIT_TOLERANCE = 0.02
#: The share of a time budget the step-time probe may take (after its minimum steps).
PROBE_SHARE = 0.04
#: Steps the pace is measured over before a refit may change the run's length.
MIN_PACE_STEPS = 3
#: A refit changes the run's length by at least this many steps.
MIN_REFIT_STEPS = 2

_TIME = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s)?$")


@dataclass(frozen=True)
class Budget:
    """A parsed budget: exactly one of ``seconds`` and ``steps`` is set.

    Attributes:
        text: The budget as written (``"15m"``, ``"1h30m"``, ``"500"``).
        seconds: Wall-clock seconds, for a time budget.
        steps: Optimizer steps, for a step budget.
    """

    text: str
    seconds: float | None = None
    steps: int | None = None

    @property
    def is_time(self) -> bool:
        """Whether the budget is wall-clock time (else steps)."""
        return self.seconds is not None


def parse_budget(text: str) -> Budget:
    """``"15m"``, ``"2h"``, ``"1h30m"``, ``"90s"`` (time) or ``"500"`` (steps).

    Raises:
        ValueError: not a duration or a positive whole number of steps.
    """
    value = str(text).strip().lower().replace(" ", "")
    if value.isdigit():
        if int(value) < 1:
            raise ValueError(f"budget {text!r}: a number of steps must be >= 1")
        return Budget(text=str(text), steps=int(value))
    match = _TIME.match(value)
    if not value or match is None or not any(match.groups()):
        raise ValueError(
            f"budget {text!r} is neither a duration (15m, 2h, 1h30m, 90s) nor a number of steps"
        )
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise ValueError(f"budget {text!r} is no time at all")
    return Budget(text=str(text), seconds=total)


def steps_for_time(
    seconds_left: float, *, step_seconds: float, done: int = 0, minimum: int = 1
) -> int:
    """The run's length in steps when ``seconds_left`` remain after ``done`` steps, each step
    taking ``step_seconds`` (evaluations and checkpoints included, once measured)."""
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
    return max(done + minimum, done + math.floor(max(seconds_left, 0.0) / step_seconds))


class BudgetClock:
    """Where a time-budgeted run stands against its deadline.

    The pace is measured in two parts, so that the plan does not jump at every evaluation:
    the time per step, with the epoch ends left out, and the time of an epoch end
    (checkpoint, evaluations), which the plan counts once per epoch end still ahead. The
    last epoch end and the exports are kept free (:attr:`reserve`).

    Args:
        seconds: The whole budget.
        steps_per_epoch: Steps in one epoch (where the epoch ends fall).
        spent: Seconds already used by earlier invocations of the same run (resume).
        started: ``time.perf_counter()`` when this invocation started (default: now).
    """

    def __init__(
        self,
        seconds: float,
        *,
        steps_per_epoch: int,
        spent: float = 0.0,
        started: float | None = None,
    ):
        self.seconds = seconds
        self.steps_per_epoch = steps_per_epoch
        self.spent_before = spent
        self.started = time.perf_counter() if started is None else started
        self._mark: tuple[float, int] | None = None
        self._ends: list[float] = []  # durations of the epoch ends since the mark
        #: Seconds kept free at the end: the last evaluation and the exports.
        self.reserve = 0.0

    def spent(self) -> float:
        """Seconds of the budget used so far, earlier invocations included."""
        return self.spent_before + time.perf_counter() - self.started

    def left(self) -> float:
        """Seconds of the budget left (negative past the deadline)."""
        return self.seconds - self.spent()

    def start_steps(self, step: int) -> None:
        """The training loop starts (or restarts) at ``step``: measure from here."""
        self._mark = (time.perf_counter(), step)
        self._ends = []

    def epoch_end(self, seconds: float) -> None:
        """An epoch end (checkpoint, evaluations) took ``seconds``; the last one measured
        is kept free for the run's own end."""
        self._ends.append(seconds)
        self.reserve = max(self.reserve, seconds)

    def fit(self, step: int, total: int) -> int | None:
        """A new length for a run at ``step`` of ``total``, or None when the plan holds."""
        if self._mark is None or step - self._mark[1] < MIN_PACE_STEPS or step >= total:
            return None
        since, first = self._mark
        per_step = (time.perf_counter() - since - sum(self._ends)) / (step - first)
        per_end = sum(self._ends) / len(self._ends) if self._ends else 0.0
        left = self.left() - self.reserve
        fitted = _longest(left, step, per_step=max(per_step, 1e-9), per_end=per_end,
                          steps_per_epoch=self.steps_per_epoch)  # fmt: skip
        past_end = fitted % self.steps_per_epoch
        if 0 < past_end <= self.steps_per_epoch // 10 and fitted - past_end > step:
            fitted -= past_end  # end at the epoch end just before: one evaluation less
        if abs(fitted - total) <= max(MIN_REFIT_STEPS, REFIT_TOLERANCE * (total - step)):
            return None
        return fitted


def _longest(
    seconds: float, step: int, *, per_step: float, per_end: float, steps_per_epoch: int
) -> int:
    """The largest length whose steps after ``step`` and epoch ends before its last step
    fit in ``seconds`` (at least one more step)."""

    def cost(total: int) -> float:
        ends = max(0, (total - 1) // steps_per_epoch - step // steps_per_epoch)
        return (total - step) * per_step + ends * per_end

    low, high = step + 1, step + 1 + max(0, math.floor(seconds / per_step))
    while low < high:  # cost grows with the length: bisect
        middle = (low + high + 1) // 2
        low, high = (middle, high) if cost(middle) <= seconds else (low, middle - 1)
    return low


def epochs_note(budget: str | None, epochs: float) -> str:
    """``config.yaml``'s note on the ``epochs`` a budget became (fractional when the run
    ends inside an epoch)."""
    return f"budget {budget}: {epochs:.3g} epochs"
