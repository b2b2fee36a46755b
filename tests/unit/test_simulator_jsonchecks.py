"""The JSON simulators' validators: jsonschema is asked only about an invalid request."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs

from gateway.simulators.cdc import _request_validator
from gateway.simulators.jsonchecks import Prechecked

SCHEMA = {
    "type": "object",
    "required": ["id", "born"],
    "properties": {"id": {"type": "string", "minLength": 3}, "born": {"format": "date"}},
}


class Counting:
    """A jsonschema validator that counts the instances it is asked about."""

    def __init__(self, schema: Any) -> None:
        self.inner = Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        self.asked = 0

    def iter_errors(self, instance: object) -> Any:
        self.asked += 1
        return self.inner.iter_errors(instance)


def test_a_valid_instance_never_reaches_jsonschema() -> None:
    counting = Counting(SCHEMA)
    checked = Prechecked(counting, SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert list(checked.iter_errors({"id": "abc", "born": "2026-01-02"})) == []
    assert counting.asked == 0


def test_an_invalid_instance_gets_jsonschemas_own_errors() -> None:
    counting = Counting(SCHEMA)
    checked = Prechecked(counting, SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    bad_ones: list[object] = [{"id": "ab", "born": "2026-01-02"}, {"id": "abc", "born": "2 Jan"}]
    for bad in [*bad_ones, {"id": 1}, []]:
        got = [(list(e.absolute_path), e.validator) for e in checked.iter_errors(bad)]
        want = [(list(e.absolute_path), e.validator) for e in counting.inner.iter_errors(bad)]
        assert got == want and got
    assert counting.asked == 4


def test_a_schema_the_compiler_does_not_do_goes_to_jsonschema_every_time() -> None:
    schema = {"type": "object", "patternProperties": {"^x": {"type": "integer"}}}
    counting = Counting(schema)
    checked = Prechecked(counting, schema)
    assert list(checked.iter_errors({"x1": 1})) == []
    assert [e.validator for e in checked.iter_errors({"x1": "one"})] == ["type"]
    assert counting.asked == 2


def test_the_cdc_request_schema_is_compiled() -> None:
    validator = _request_validator()
    assert isinstance(validator, Prechecked)
    assert [e.validator for e in validator.iter_errors({})][:1] == ["required"]
