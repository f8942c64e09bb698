"""Plain-text tables for terminal output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Align ``rows`` under headers; ``columns`` is a list of (key, header)."""
    cells = [[header for _, header in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) is None else str(row[key]) for key, _ in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
