"""The supervision ledger as a terminal table, CSV or JSON. Pure: a ledger in, text out."""

from __future__ import annotations

import csv
import io
import json
from typing import Literal

from gateway.supervision.ledger import Ledger, LedgerRow

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")
CONTENT_TYPES: dict[Format, str] = {
    "table": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
COLUMNS = (
    "department",
    "system",
    "matter",
    "received",
    "completed_on_time",
    "completed_late",
    "cancelled",
    "open_within_time",
    "open_overdue",
    "average_hours",
    "p90_hours",
    "corrections_requested",
    "due_estimated",
)
_HEADS = (
    "department",
    "system",
    "matter",
    "received",
    "on time",
    "late",
    "cancelled",
    "open",
    "overdue",
    "avg h",
    "p90 h",
    "corrections",
    "est. due",
)


def render(ledger: Ledger, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(ledger.as_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        return csv_text(ledger)
    return table(ledger)


def csv_text(ledger: Ledger) -> str:
    """One line per department and matter, then per department (matter ``*``), then the
    total (``*``); the month and the as-of moment on every line, for spreadsheets."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("month", "as_of", *COLUMNS))
    as_of = ledger.as_of.isoformat(timespec="seconds")
    for row in (*ledger.rows, *ledger.departments, ledger.total):
        writer.writerow((ledger.month, as_of, *(_csv(v) for v in _values(row))))
    return out.getvalue()


def table(ledger: Ledger, *, per_matter: bool = True) -> str:
    """Aligned columns: per department and matter (unless ``per_matter`` is false), then
    per department, then the total."""
    head = (
        f"Supervision ledger {ledger.month} (as of {ledger.as_of:%Y-%m-%d %H:%M %Z}; "
        f"{ledger.calendar}; open = within time, overdue = open past its due time)"
    )
    if ledger.calendar_uncovered_years:
        years = ", ".join(str(y) for y in ledger.calendar_uncovered_years)
        head += (
            f"\nest. due: due times reaching {years} are counted Monday to Friday, without "
            "public holidays (the calendar has no State Council notice for them)"
        )
    if not ledger.rows:
        return f"{head}\nno task clock ran in {ledger.month}\n"
    lines = [_cells(row) for row in ledger.rows]
    subtotal = [_cells(row) for row in ledger.departments]
    total = _cells(ledger.total)
    widths = [
        max(len(h), *(len(c[i]) for c in (*lines, *subtotal, total))) for i, h in enumerate(_HEADS)
    ]

    def fmt(cells: tuple[str, ...]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:3], widths[:3], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[3:], widths[3:], strict=True)]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(fmt(_HEADS))
    out = [head, fmt(_HEADS), rule]
    if per_matter:
        out += [*(fmt(c) for c in lines), rule]
    out += [fmt(c) for c in subtotal]
    out += [rule, fmt(total)]
    return "\n".join(out) + "\n"


def _values(row: LedgerRow) -> tuple[object, ...]:
    return tuple(getattr(row, c) for c in COLUMNS)


def _cells(row: LedgerRow) -> tuple[str, ...]:
    return tuple(
        "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v) for v in _values(row)
    )


def _csv(value: object) -> object:
    return "" if value is None else value
