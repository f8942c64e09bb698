"""The parts of an embeddings file being written: Parquet row tables saved as a run goes.

Next to the output ``emb.parquet`` lives ``.emb.parquet.parts/`` with ``state.json`` (the
recipe and input roots of the run) and parts named ``<attempt>-<rank>-<seq>.parquet``, each
written atomically. An interrupted run leaves the folder behind; the next run with the same
recipe reads which images the parts hold and embeds only the others. The folder is removed
once the parts are merged into the output.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import atomic_write

_PART = re.compile(r"^(\d{3})-(\d{3})-(\d{6})\.parquet$")


@dataclass(frozen=True)
class WorkDir:
    """The parts folder of one output file.

    Attributes:
        path: ``<out folder>/.<out name>.parts``.
    """

    path: Path

    @classmethod
    def of(cls, out: Path) -> WorkDir:
        """The work folder of output ``out``."""
        return cls(out.parent / f".{out.name}.parts")

    @property
    def state_file(self) -> Path:
        """``state.json``: the run's recipe and roots."""
        return self.path / "state.json"

    def read_state(self) -> dict[str, Any] | None:
        """The state of an earlier run, or ``None`` when there is none (or it is unreadable)."""
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state

    def reset(self, state: dict[str, Any]) -> None:
        """Start afresh: remove any parts, write ``state``."""
        self.remove()
        self.path.mkdir(parents=True)
        text = json.dumps(state, sort_keys=True)
        atomic_write(self.state_file, lambda tmp: tmp.write_text(text))

    def parts(self) -> list[Path]:
        """The part files, in merge order (attempt, rank, sequence)."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if _PART.match(p.name))

    def next_attempt(self) -> int:
        """One more than the highest attempt number among the parts."""
        attempts = [int(m.group(1)) for p in self.parts() if (m := _PART.match(p.name))]
        return max(attempts, default=0) + 1

    def write_part(self, attempt: int, rank: int, seq: int, table: Any) -> Path:
        """Part ``seq`` of ``rank`` in ``attempt``: a row table (see :mod:`._tables`)."""
        import pyarrow.parquet as pq

        path = self.path / f"{attempt:03d}-{rank:03d}-{seq:06d}.parquet"
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp))

    def part_tables(self, columns: list[str] | None = None) -> Iterator[Any]:
        """The row tables of every part, in merge order (only ``columns`` when given)."""
        import pyarrow.parquet as pq

        for part in self.parts():
            yield pq.read_table(part, columns=columns)

    def write_skipped(self, attempt: int, rank: int, skipped: list[dict[str, str]]) -> None:
        """The unreadable images of one rank (merged by :meth:`read_skipped`)."""
        text = json.dumps(skipped)
        atomic_write(
            self.path / f"skipped-{attempt:03d}-{rank:03d}.json", lambda t: t.write_text(text)
        )

    def read_skipped(self, attempt: int) -> list[dict[str, str]]:
        """The unreadable images every rank of ``attempt`` reported, in rank order."""
        found: list[dict[str, str]] = []
        for path in sorted(self.path.glob(f"skipped-{attempt:03d}-*.json")):
            found.extend(json.loads(path.read_text()))
        return found

    def remove(self) -> None:
        """Delete the folder (no error when it does not exist)."""
        if self.path.exists():
            shutil.rmtree(self.path)
