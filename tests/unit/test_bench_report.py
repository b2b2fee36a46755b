"""The bench's output: value formatting, the table, the JSON document, progress lines."""

from __future__ import annotations

import io
import json

from gateway.bench.report import Progress, Row, figures, format_value, render_table


def test_values_get_precision_that_fits_their_size() -> None:
    assert format_value(12_834.4, "msg/s") == "12,834 msg/s"
    assert format_value(117.2, "µs") == "117 µs"
    assert format_value(39.14, "µs") == "39.1 µs"
    assert format_value(4.437, "µs") == "4.44 µs"
    assert format_value(0.614, "ratio") == "0.61"
    assert format_value(None, "µs") == "—"


def test_table_groups_rows_by_section_in_first_seen_order_and_aligns_them() -> None:
    rows = [
        Row("raw", "publish", 12_800.0, "msg/s", "DESIGN ~12,800"),
        Row("raw", "consume", 21_000.0, "msg/s"),
        Row("costs", "signature check", 4.4, "µs"),
        Row("costs", "PostgreSQL", None, "µs", "not measured: no URL"),
        Row("raw", "one hop", 8_000.0, "msg/s"),
    ]
    lines = render_table(rows).splitlines()
    assert lines == [
        "raw",
        "  publish          12,800 msg/s  DESIGN ~12,800",
        "  consume          21,000 msg/s",
        "",
        "costs",
        "  signature check    4.40 µs",
        "  PostgreSQL            —        not measured: no URL",
        "",
        "raw",  # a section seen again starts again: rows keep the order they were made in
        "  one hop           8,000 msg/s",
    ]


def test_an_empty_table_says_so() -> None:
    assert render_table([]) == "(no figures)"


def test_figures_document_is_json_with_meta_and_every_row() -> None:
    rows = [Row("ratios", "hop efficiency", 0.42, "ratio", "target ≥ 0.5")]
    document = json.loads(json.dumps(figures(rows, {"quick": True, "noisy": False})))
    assert document["meta"] == {"quick": True, "noisy": False}
    assert document["figures"] == [
        {
            "section": "ratios",
            "name": "hop efficiency",
            "value": 0.42,
            "unit": "ratio",
            "note": "target ≥ 0.5",
        }
    ]


def test_progress_lines_carry_the_elapsed_time() -> None:
    now = [100.0]
    out = io.StringIO()
    progress = Progress(out, clock=lambda: now[0])
    now[0] = 112.34
    progress("raw: publish 12,800 msg/s")
    assert out.getvalue() == "[  12.3 s] raw: publish 12,800 msg/s\n"
