"""``gateway contracts check --against REF``: every contract of this tree against REF.

Which file is which contract, and whose, follows from where it lives:

    contracts/envelope/envelope.schema.json   JSON Schema     portals (they write it)
    contracts/intake/openapi.yaml             OpenAPI         portals
    contracts/asyncapi/asyncapi.yaml          AsyncAPI        each channel's x-party
    contracts/<system>/*.wsdl | *.xsd         WSDL / XSD      department <system>
    contracts/<system>/openapi.yaml           OpenAPI         department <system>
    contracts/<system>/**/*.schema.json       JSON Schema     department <system>

Who writes each department file is named in ``DIRECTIONS`` (never guessed from a name):
``request`` the gateway writes it and the department reads it (a narrowing breaks us),
``response`` the department writes it and the gateway reads it (a widening breaks us),
``both`` shared types. An XSD holding both (hukou) names the direction of each global
element; its named types take the directions of the elements that use them. A department
file not listed counts as ``both`` (every narrowing and widening breaks) until it is.
Examples, READMEs and expectation files are not contracts of their own (tests hold them to
the contracts), nor are ``codes.json`` files: they are the gateway's mapping tables; the
department's own code lists are the enumerations of its XSD or JSON Schema, compared above.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

import yaml

from gateway.compat.asyncapi import diff_asyncapi
from gateway.compat.openapi import diff_openapi
from gateway.compat.report import Change, Changes, Direction
from gateway.compat.schema import diff_schemas
from gateway.compat.xsd import diff_wsdl, diff_xsd
from gateway.errors import ConfigurationError

# hukou: the WSDL's input messages are requests; its outputs and faults, answers
_HUKOU: dict[str, Direction] = {
    "*": "request",
    "Receipt": "response",
    "CaseStatus": "response",
    "FaultDetail": "response",
}
DIRECTIONS: dict[str, Direction | dict[str, Direction]] = {
    "contracts/cdc/request.schema.json": "request",
    "contracts/cdc/reply.schema.json": "response",
    "contracts/hospital/request.xsd": "request",
    "contracts/hospital/ack.xsd": "response",
    "contracts/hospital/result.xsd": "response",
    "contracts/provincial/schemas/case-request.schema.json": "request",
    "contracts/provincial/schemas/case-receipt.schema.json": "response",
    "contracts/provincial/schemas/case.schema.json": "response",
    "contracts/provincial/schemas/case-event.schema.json": "response",
    "contracts/provincial/schemas/common.schema.json": "both",
    "contracts/provincial/items/": "request",  # every item's data: the gateway writes it
    "contracts/hukou/hukou.xsd": _HUKOU,
    "contracts/hukou/hukou.wsdl": _HUKOU,
}
_NOT_CONTRACTS = ("examples", "baseline")


class Files(Protocol):
    def paths(self) -> list[str]: ...

    def read(self, path: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Contract:
    path: str
    kind: str  # jsonschema | openapi | asyncapi | xsd | wsdl
    party: str
    direction: Direction = "request"
    elements: tuple[tuple[str, Direction], ...] = ()  # XSD: global element → direction


def classify(path: str) -> Contract | None:
    """What contract a repository path holds, and whose; None for any other file."""
    parts = PurePosixPath(path).parts
    if len(parts) < 3 or parts[0] != "contracts" or any(p in _NOT_CONTRACTS for p in parts):
        return None
    folder, name = parts[1], parts[-1]
    if folder == "envelope":
        if name.endswith(".schema.json"):
            return Contract(path, "jsonschema", "portals")
        return None
    if folder == "intake":
        return Contract(path, "openapi", "portals") if name == "openapi.yaml" else None
    if folder == "asyncapi":
        return Contract(path, "asyncapi", "") if name == "asyncapi.yaml" else None
    party = f"department {folder}"
    kind = (
        "wsdl" if name.endswith(".wsdl")
        else "xsd" if name.endswith(".xsd")
        else "openapi" if name == "openapi.yaml"
        else "jsonschema" if name.endswith(".schema.json")
        else None
    )  # fmt: skip
    if kind is None:
        return None
    if kind == "openapi":
        return Contract(path, kind, party)  # bodies as request, answers as response
    named = direction_of(path)
    if isinstance(named, dict):
        elements = tuple(sorted((k, v) for k, v in named.items() if k != "*"))
        return Contract(path, kind, party, named.get("*", "both"), elements)
    return Contract(path, kind, party, named)


def direction_of(path: str) -> Direction | dict[str, Direction]:
    """Who writes a department's file (``DIRECTIONS``); ``both`` when it is not listed."""
    if path in DIRECTIONS:
        return DIRECTIONS[path]
    folders = [p for p in DIRECTIONS if p.endswith("/") and path.startswith(p)]
    return DIRECTIONS[max(folders, key=len)] if folders else "both"


def compare(before: Files, after: Files) -> list[Change]:
    """Every change between the contracts of ``before`` and those of ``after``."""
    old = {p: c for p in before.paths() if (c := classify(p))}
    new = {p: c for p in after.paths() if (c := classify(p))}
    found: list[Change] = []
    for path, contract in old.items():
        if path not in new:
            out = Changes(contract.party or "every party", path)
            out.breaking("", "contract file removed")
            found += out.found
            continue
        found += _compare(contract, before.read(path), after.read(path))
    for path, contract in new.items():
        if path not in old:
            out = Changes(contract.party or "every party", path)
            out.additive("", "contract file added")
            found += out.found
    return found


def _compare(contract: Contract, old: bytes, new: bytes) -> list[Change]:
    if old == new:
        return []
    out = Changes(contract.party, contract.path)
    try:
        if contract.kind == "jsonschema":
            versioned = contract.party == "portals"  # the envelope: schema_version's own rule
            diff_schemas(out, _json(old), _json(new), contract.direction, versioned)
        elif contract.kind == "openapi":
            diff_openapi(out, _yaml(old), _yaml(new))
        elif contract.kind == "asyncapi":
            parties: dict[str, Changes] = {}
            diff_asyncapi(parties, contract.path, _yaml(old), _yaml(new))
            return [c for changes in parties.values() for c in changes.found]
        elif contract.kind == "xsd":
            diff_xsd(out, old, new, contract.direction, dict(contract.elements))
        else:
            diff_wsdl(out, old, new, contract.direction, dict(contract.elements))
    except (ValueError, yaml.YAMLError) as exc:  # lxml's XMLSyntaxError is a ValueError
        out.breaking("", f"cannot be read any more: {exc}")
    return out.found


def _json(data: bytes) -> Mapping[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _yaml(data: bytes) -> Mapping[str, Any]:
    value = yaml.safe_load(data)
    if not isinstance(value, dict):
        raise ValueError("not a YAML mapping")
    return value


def breaking(changes: Iterable[Change]) -> list[Change]:
    return [c for c in changes if c.breaking]


__all__ = ["ConfigurationError", "Contract", "breaking", "classify", "compare"]
