"""schema_version: intake accepts the current and the previous minor version, as data.

The rule is a function of the current version, so that 1.1 arriving later needs one constant
and one ``Literal`` changed (and this test holds the two together); anything else is refused
with a 422 naming the versions accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from gateway.compat.check import compare
from gateway.compat.report import Change, render
from gateway.envelope.model import (
    ACCEPTED_VERSIONS,
    SCHEMA_VERSION,
    SchemaVersion,
    accepted_versions,
    parse_envelope,
)
from gateway.errors import InvalidEnvelope

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "contracts/envelope/examples/valid/newborn-minimal-online.json"
SCHEMA = ROOT / "contracts/envelope/envelope.schema.json"


@pytest.mark.parametrize(
    ("current", "accepted"),
    [
        ("1.0", ("1.0",)),
        ("1.1", ("1.1", "1.0")),
        ("1.7", ("1.7", "1.6")),
        ("2.0", ("2.0",)),
        ("2.1", ("2.1", "2.0")),
    ],
)
def test_current_and_previous_minor(current: str, accepted: tuple[str, ...]) -> None:
    assert accepted_versions(current) == accepted


def test_the_model_accepts_exactly_the_accepted_versions() -> None:
    assert accepted_versions(SCHEMA_VERSION) == ACCEPTED_VERSIONS
    assert get_args(SchemaVersion) == ACCEPTED_VERSIONS


def test_the_published_schema_lists_the_accepted_versions() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for name, node in schema["$defs"].items():
        if not name.endswith("Envelope"):
            continue
        spec = node["properties"]["schema_version"]
        assert spec.get("enum", [spec.get("const")]) == list(ACCEPTED_VERSIONS), name


@pytest.mark.parametrize("version", ACCEPTED_VERSIONS)
def test_every_accepted_version_parses(version: str) -> None:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["schema_version"] = version
    assert parse_envelope(json.dumps(data).encode()).schema_version == version


@pytest.mark.parametrize("version", ["0.9", "1.9", "2.0", "1", ""])
def test_an_unsupported_version_is_refused_naming_the_supported_ones(version: str) -> None:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["schema_version"] = version
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope(json.dumps(data).encode())
    accepted = ", ".join(ACCEPTED_VERSIONS)
    assert caught.value.as_dicts() == [
        {
            "loc": "schema_version",
            "msg": f"unsupported schema version; this gateway accepts {accepted}",
            "type": "literal_error",
        }
    ]


def _envelope_accepting(*versions: str) -> bytes:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for name, node in schema["$defs"].items():
        if name.endswith("Envelope"):
            spec = node["properties"]["schema_version"]
            spec.pop("const", None)
            spec["enum"] = list(versions)
    return json.dumps(schema).encode()


def _guard(before: tuple[str, ...], after: tuple[str, ...]) -> list[Change]:
    path = "contracts/envelope/envelope.schema.json"
    return compare(
        InMemory({path: _envelope_accepting(*before)}),
        InMemory({path: _envelope_accepting(*after)}),
    )


class InMemory:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def paths(self) -> list[str]:
        return sorted(self.files)

    def read(self, path: str) -> bytes:
        return self.files[path]


def test_the_guard_expects_the_minor_two_back_to_be_retired() -> None:
    """1.1 current (1.1, 1.0 accepted) → 1.2 current (1.2, 1.1): 1.0 leaves by the rule."""
    found = _guard(("1.1", "1.0"), ("1.2", "1.1"))
    assert found and not any(c.breaking for c in found), found
    text = render(found, "REF")
    assert "version(s) ['1.0'] retired as the version rule says" in text
    envelopes = [d for d in json.loads(SCHEMA.read_text(encoding="utf-8"))["$defs"] if "Env" in d]
    assert f"(and {len(envelopes) - 1} more places)" in text  # one line for every envelope
    assert "no breaking change against REF" in text


@pytest.mark.parametrize(
    ("before", "after", "gone"),
    [
        (("1.1", "1.0"), ("1.2",), "['1.1']"),  # the previous minor must stay
        (("1.1", "1.0"), ("2.0",), "['1.1', '1.0']"),  # a new major breaks by design
        (("1.1", "1.0"), ("1.1",), "['1.0']"),  # the previous minor retired too early
    ],
)
def test_the_guard_breaks_on_any_other_version_removal(
    before: tuple[str, ...], after: tuple[str, ...], gone: str
) -> None:
    found = [c for c in _guard(before, after) if c.breaking]
    assert found and all(c.party == "portals" for c in found)
    assert all(c.where.endswith(".schema_version") for c in found)
    assert {c.what for c in found} == {f"version(s) {gone} no longer accepted"}
