"""Every task the gateway would send for every example envelope, and what each mapping makes
of it — shared by the contract and data-minimisation tests.

A task is built exactly as the planner builds one: the catalogue step's ``needs`` cut from the
stored (parsed, normalised) envelope with ``select``, plus sample values of what earlier steps
provide. Steps whose ``when`` path the example leaves empty do not apply and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from connectors.base import DepartmentRequest
from gateway.catalogue.fields import present, select
from gateway.catalogue.model import load
from gateway.envelope.model import ENVELOPE_ADAPTER, parse_envelope
from mappings import cdc, hukou, provincial
from mappings.hospital import to_hospital
from mappings.hospital_xml import render_request

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "contracts" / "envelope" / "examples" / "valid"
APP = "0190a0b0-0000-7000-8000-000000000001"
SAMPLE_CITIZEN_ID = "431022202611200017"  # a valid GB 11643 number, born 2026-11-20


def _provided() -> dict[str, str]:
    values = {
        name: f"{name.upper().replace('_', '')[:8]}2026000123"
        for matter in load().matters.values()
        for step in matter.steps
        for name in step.provides
    }
    values.update(
        birth_certificate_no="Q430012345",
        death_certificate_no="S4310222611180007",
        citizen_id=SAMPLE_CITIZEN_ID,
        marriage_certificate_no="J431022-2026-000123",
    )
    return values


PROVIDED = _provided()


@dataclass(frozen=True)
class Task:
    example: str
    step: str
    request: DepartmentRequest

    @property
    def id(self) -> str:
        return f"{self.request.system}:{self.example}:{self.step}"


def stored_envelope(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ENVELOPE_ADAPTER.dump_json(parse_envelope(path.read_bytes())))
    return data


def tasks() -> Iterator[Task]:
    catalogue = load()
    for path in sorted(EXAMPLES.glob("*.json")):
        envelope = stored_envelope(path)
        matter = catalogue.matter(envelope["matter"])
        for step in matter.steps:
            if step.when is not None and not present(envelope, step.when):
                continue
            fields = select(envelope, step.needs, PROVIDED)
            request = DepartmentRequest(
                f"{APP}.{step.key}", APP, envelope["matter"], step.key, step.system,
                step.operation, 1, fields,
            )  # fmt: skip
            yield Task(path.stem, step.key, request)


def output(request: DepartmentRequest) -> Any:
    """What the system's mapping makes of the task: a dict, or XML bytes for the hospital."""
    if request.system == "hukou":
        call = hukou.submission(request)
        return {call.operation: call.body}
    if request.system == "hospital":
        return render_request(to_hospital(request))
    if request.system == "cdc":
        return cdc.request_for(request)
    if request.system == "provincial":
        return provincial.case_request(request, callback_url="https://gw.example/v1/callbacks/p")
    raise AssertionError(f"no mapping known to the tests for {request.system}")


def field_paths(value: Any) -> set[str]:
    """Leaf paths of a mapping's output: ``Child.Name``, ``heirs[].name``, XML ``Birth/Child``."""
    if isinstance(value, bytes):
        root = etree.fromstring(value, etree.XMLParser(resolve_entities=False, no_network=True))
        return {_xml_path(e) for e in root.iter() if isinstance(e.tag, str) and len(e) == 0}
    found: set[str] = set()
    _walk(value, "", found)
    return found


def _walk(value: Any, at: str, found: set[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _walk(item, f"{at}.{key}" if at else str(key), found)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, f"{at}[]", found)
    elif value is not None and not isinstance(value, bool | int | float | str | date | datetime):
        _walk(vars(value), at, found)
    elif value is not None:
        found.add(at)


def _xml_path(element: Any) -> str:
    parts = []
    while element is not None:
        parts.append(etree.QName(element).localname)
        element = element.getparent()
    return "/".join(reversed(parts))
