"""A run's length as the user states it: a wall-clock budget (``15m``, ``2h``) or steps.

``--budget 500`` is 500 optimizer steps. ``--budget 15m`` is 15 minutes from the start of the
command to the exported weights: the run measures how long its steps take on this machine
(:mod:`dinokit.training.probe`), turns the time into a number of steps before the first one,
and every schedule spans those steps. While it trains, :class:`BudgetClock` compares the
clock with the plan (its evaluations and checkpoints take time too) and, when the plan is
off by more than :data:`REFIT_TOLERANCE`, gives a new length; the run then stretches what
is left of its schedules over it (:func:`dinokit.dino.respan`). A resumed run continues
towards the same budget: the time spent before the interruption is recorded in the
checkpoint and counts.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

#: A refit changes the run's length only when the plan is off by more than this fraction.
REFIT_TOLERANCE = 0.02
#: The share of a time budget the step-time probe may take (after its minimum steps).
PROBE_SHARE = 0.04
#: Steps the pace is measured over before a refit may change the run's length.
MIN_PACE_STEPS = 3

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

    Args:
        seconds: The whole budget.
        spent: Seconds already used by earlier invocations of the same run (resume).
        started: ``time.perf_counter()`` when this invocation started (default: now).
    """

    def __init__(self, seconds: float, *, spent: float = 0.0, started: float | None = None):
        self.seconds = seconds
        self.spent_before = spent
        self.started = time.perf_counter() if started is None else started
        self._mark: tuple[float, int] | None = None
        #: Seconds the run's last evaluation or epoch end took (checkpoint, evaluations): kept
        #: free at the end for the final ones and the exports.
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

    def fit(self, step: int, total: int) -> int | None:
        """A new length for a run at ``step`` of ``total``, or None when the plan holds.

        The time per step is measured since :meth:`start_steps`, so evaluations and
        checkpoints are part of it; :attr:`reserve` is kept free for the end.
        """
        if self._mark is None or step - self._mark[1] < MIN_PACE_STEPS or step >= total:
            return None
        since, first = self._mark
        per_step = (time.perf_counter() - since) / (step - first)
        fitted = steps_for_time(self.left() - self.reserve, step_seconds=per_step, done=step)
        if abs(fitted - total) <= max(1.0, REFIT_TOLERANCE * total):
            return None
        return fitted
