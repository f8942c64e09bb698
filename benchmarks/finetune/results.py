"""What the stages measured, as ``results.json`` keeps it (one entry per stage that ran).

Accuracies are fractions in [0, 1]; seconds are wall-clock.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class KnnPoint:
    """Teacher kNN top-1 (k = 20) and the effective rank of its features at an epoch."""

    epoch: float
    knn: float
    effective_rank: float


@dataclass
class Evaluation:
    """One ``dinokit evaluate`` row."""

    preprocess: str | None
    branch: str | None
    knn: float
    effective_rank: float | None


@dataclass
class TimedRun:
    """A ``dinokit train`` run: its wall-clock and its kNN after each epoch (0: at init)."""

    seconds: float
    curve: list[KnnPoint]


@dataclass
class GuideRun:
    """The guide's loop: its steps, wall-clock and kNN curve (kept in its ``result.json``)."""

    steps: int
    seconds: float
    curve: list[KnnPoint]


@dataclass
class Scratch:
    """From scratch on cifar10-mini at equal wall-clock."""

    dinokit: TimedRun
    guide: GuideRun


@dataclass
class ArmRun:
    """One fine-tuning run: kNN after it on the new domain and on the pretraining one."""

    seed: int
    seconds: float
    after: Evaluation
    cifar_after: Evaluation
    curve: list[KnnPoint]


@dataclass
class FineTuning:
    """Ways to fine-tune one model (the arms), each over seeds, and the model before."""

    before: Evaluation
    before_cifar: Evaluation
    arms: dict[str, list[ArmRun]]


@dataclass
class Strong(FineTuning):
    """:class:`FineTuning` from the supervised stand-in, with its training time."""

    seconds: float
    epochs: int


@dataclass
class ProbeRow:
    """One single-change probe: kNN of both branches and the teacher's entropy (nats)."""

    teacher: float
    student: float
    teacher_entropy_last: float | None
    teacher_entropy_min: float | None
    max_entropy: float


@dataclass
class Probes:
    steps: int
    rows: dict[str, ProbeRow]


@dataclass
class Results:
    """Every stage's results; None for a stage that has not run."""

    scratch: Scratch | None = None
    seeds: dict[str, dict[str, list[KnnPoint]]] | None = None  # recipe -> seed -> curve
    pretrain: TimedRun | None = None
    finetune: FineTuning | None = None
    strong: Strong | None = None
    extras: dict[str, list[Evaluation]] | None = None  # model -> its rows
    probes: Probes | None = None
    budget: dict[str, FineTuning] | None = None  # start (weak, strong) -> its arms

    @classmethod
    def load(cls, path: Path) -> Results:
        """``path`` if it exists, else no results."""
        return read_json(cls, path) if path.exists() else cls()

    def save(self, path: Path) -> None:
        """Write the stages that ran to ``path``."""
        ran = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        path.write_text(json.dumps(ran, indent=1))


def read_json(kind: type[T], path: Path) -> T:
    """A JSON file as ``kind`` (a dataclass above)."""
    built: T = from_json(kind, json.loads(path.read_text()))
    return built


def write_json(value: Any, path: Path) -> None:
    """A dataclass above as a JSON file."""
    path.write_text(json.dumps(dataclasses.asdict(value), indent=1))


def from_json(kind: Any, data: Any) -> Any:
    """Parsed JSON as ``kind``: dataclasses, lists, dicts and optionals, recursively."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if data is None:
        return None
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        given = {f.name: data[f.name] for f in dataclasses.fields(kind) if f.name in data}
        return typing.cast(Any, kind)(**{k: from_json(hints[k], v) for k, v in given.items()})
    if origin is list:
        return [from_json(args[0], item) for item in data]
    if origin is dict:
        return {key: from_json(args[1], value) for key, value in data.items()}
    if origin in (typing.Union, types.UnionType):
        return from_json(next(a for a in args if a is not type(None)), data)
    return data
