"""What the bench shows: progress lines while it runs, one table at the end, the JSON file.

Every figure is a ``Row`` (section, name, value, unit, note); a value of None means the
figure was not measured in this run and the note says why.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TextIO


@dataclass(frozen=True, slots=True)
class Row:
    section: str
    name: str
    value: float | None
    unit: str
    note: str = ""


def format_value(value: float | None, unit: str) -> str:
    """A figure for people: thousands separated, precision that fits its size."""
    number = format_number(value, unit)
    return f"{number} {unit}" if unit and unit != "ratio" and value is not None else number


def format_number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    if unit in ("", "ratio"):
        return f"{value:.2f}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(rows: Sequence[Row]) -> str:
    """Rows grouped by section (in first-seen order): names, numbers and units aligned."""
    if not rows:
        return "(no figures)"
    numbers = [format_number(r.value, r.unit) for r in rows]
    units = ["" if r.unit == "ratio" or r.value is None else r.unit for r in rows]
    name_width = max(len(r.name) for r in rows)
    number_width = max(len(n) for n in numbers)
    unit_width = max(len(u) for u in units)
    lines: list[str] = []
    section: str | None = None
    for row, number, unit in zip(rows, numbers, units, strict=True):
        if row.section != section:
            section = row.section
            if lines:
                lines.append("")
            lines.append(section)
        line = f"  {row.name:<{name_width}}  {number:>{number_width}} {unit:<{unit_width}}"
        lines.append(f"{line}  {row.note}".rstrip() if row.note else line.rstrip())
    return "\n".join(lines)


def figures(rows: Iterable[Row], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of ``--json``: the run's facts and every row."""
    return {"meta": dict(meta), "figures": [asdict(r) for r in rows]}


class Progress:
    """``[  12.3 s] message`` lines on ``out`` (stdout), flushed at once."""

    def __init__(
        self, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._out = out
        self._clock = clock
        self._start = clock()

    def __call__(self, message: str) -> None:
        out = self._out if self._out is not None else sys.stdout
        print(f"[{self.elapsed:6.1f} s] {message}", file=out, flush=True)

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start
