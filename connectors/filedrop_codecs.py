"""What each file-drop system's contract adds to the file-drop transport: its file formats.

A ``Codec`` turns a ``DepartmentRequest`` into request bytes that pass the system's contract and
turns a complete answer file into a ``Decision``; both raise ``Permanent`` when the contract
says no. ``codec_for(system)`` is the registry (one line per file-drop system).

XML is read under the one XML policy (``connectors.xmlsafe``): size and depth caps, no network,
no DTD, no entity expansion, no huge trees; a document with a DOCTYPE is refused outright.
Schema error messages are kept to the element and the rule broken: the offending value is cut
out (it may be a name or an ID number).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from lxml import etree

from connectors import xmlsafe
from connectors.base import Decision, DepartmentRequest
from gateway.errors import ConfigurationError, Permanent
from mappings import hospital, hospital_xml


class Codec(Protocol):
    def request_file(self, request: DepartmentRequest) -> bytes:
        """The request file's bytes, already checked against the contract."""
        ...

    def read(self, data: bytes) -> Decision:
        """The decision (or receipt, as ``in_progress``) a complete answer file holds."""
        ...


_QUOTED = re.compile(r"(\[facet )?'[^']*'")
_ELEMENT = re.compile(r"^Element '(?:\{[^}]*\})?([^']+)': ")


def schema_errors(log: Any, limit: int = 5) -> str:
    """``line N: Element: rule`` for the first errors, with every quoted value cut out."""
    found = []
    for entry in list(log)[:limit]:
        message = str(entry.message)
        element = ""
        if m := _ELEMENT.match(message):
            element, message = m.group(1) + ": ", message[m.end() :]
        message = _QUOTED.sub(lambda m: m[0] if m[1] else "'…'", message)
        found.append(f"line {entry.line}: {element}{message}")
    return "; ".join(found) or "document does not match the schema"


def parse(data: bytes, system: str) -> Any:
    """The root element of ``data`` under the XML policy; ``UnsafeXml`` (``Permanent``) naming
    the rule otherwise."""
    return xmlsafe.parse(data, system=system)


def load_schema(package: str, *path: str) -> Any:
    from importlib.resources import files

    try:
        source = files(package).joinpath(*path).read_bytes()
        return etree.XMLSchema(xmlsafe.parse(source, what="schema"))
    except (OSError, etree.XMLSchemaParseError, xmlsafe.UnsafeXml) as exc:
        raise ConfigurationError(f"cannot load schema {package}/{'/'.join(path)}: {exc}") from None


class HospitalCodec:
    """``contracts/hospital``: request.xsd out; ack.xsd and result.xsd in."""

    system = hospital.SYSTEM

    def __init__(self) -> None:
        self._request = load_schema("contracts", "hospital", "request.xsd")
        result = load_schema("contracts", "hospital", "result.xsd")
        self._answers = {
            f"{{{hospital.NS}}}Acknowledgement": load_schema("contracts", "hospital", "ack.xsd"),
            f"{{{hospital.NS}}}CertificateResult": result,
            f"{{{hospital.NS}}}RequestRejected": result,
        }

    def _check(self, schema: Any, root: Any, what: str) -> None:
        if not schema.validate(root):
            raise Permanent(
                f"{what} breaks the hospital contract: {schema_errors(schema.error_log)}",
                system=self.system,
                code="contract",
            )

    def request_file(self, request: DepartmentRequest) -> bytes:
        data = hospital_xml.render_request(hospital.to_hospital(request))
        self._check(self._request, parse(data, self.system), "request")
        return data

    def read(self, data: bytes) -> Decision:
        root = parse(data, self.system)
        schema = self._answers.get(root.tag)
        if schema is None:
            raise Permanent("not a hospital answer document", system=self.system, code="contract")
        self._check(schema, root, "answer")
        return hospital.to_decision(hospital_xml.read_document(root))


CODECS: dict[str, Callable[[], Codec]] = {"hospital": HospitalCodec}


def codec_for(system: str) -> Codec:
    try:
        return CODECS[system]()
    except KeyError:
        raise ConfigurationError(
            f"no file-drop contract is known for system {system!r} (known: {sorted(CODECS)})",
            system=system,
        ) from None
