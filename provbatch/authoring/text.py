"""Plain-text helpers of the authoring tools: aligned tables, values on one line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Columns aligned on their widest cell, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def single_spaced(text: Any) -> str:
    """Whitespace runs (tabs, newlines) as single spaces: a table cell or a listing line."""
    return " ".join(str(text).split())
