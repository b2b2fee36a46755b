"""Values a log line carries that are neither texts nor JSON structures: the renderers write
them as their ``repr`` (or decoded), so masking must look into that text too."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import masking
from gateway.logs import configure_logging, get_logger

ID, PHONE, NAME = "431022200001011234", "13907351234", "欧阳娜娜"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = configure_logging("json", stream=out)
    yield out
    logging.getLogger().removeHandler(handler)


class _Record:
    def __init__(self, id_number: str) -> None:
        self.id_number = id_number

    def __repr__(self) -> str:
        return f"_Record(id_number={self.id_number!r})"


@pytest.mark.parametrize(
    "value",
    [
        f'{{"subject": "{ID}"}}'.encode(),
        bytearray(f"tel {PHONE}".encode()),
        ValueError(f"no such citizen {ID}"),
        {ID, "x"},
        frozenset({PHONE}),
        {ID: "the key is an ID"},
        13907351234.0,
        _Record(ID),
    ],
    ids=["bytes", "bytearray", "exception", "set", "frozenset", "dict-key", "float", "object"],
)
def test_a_value_written_as_its_repr_is_masked(lines: io.StringIO, value: Any) -> None:
    get_logger("test.masking").info("handled", detail=value)
    line = lines.getvalue()
    assert ID not in line
    assert PHONE not in line
    assert json.loads(line)["event"] == "handled"


def test_a_known_name_in_bytes_or_an_exception_is_masked(lines: io.StringIO) -> None:
    with masking.personal_data([NAME]):
        get_logger("test.masking").info(
            "handled", body=f"<Name>{NAME}</Name>".encode(), error=RuntimeError(f"{NAME} unknown")
        )
    assert NAME not in lines.getvalue()


def test_values_with_nothing_to_mask_are_left_as_they_are() -> None:
    error = ValueError("plain")
    values = {"b": b"abc", "e": error, "s": {"a"}, "f": 0.5, "big": 12345678901.5, "k": {"a": 1}}
    assert masking.mask_value(values, known=()) == values
    assert masking.mask_value(error, known=()) is error
    assert masking.mask_value(13907351234.0, known=()) == "139****1234.0"
    assert masking.mask_value({ID: 1}, known=()) == {"4310**********1234": 1}
