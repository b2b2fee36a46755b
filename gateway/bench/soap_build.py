"""The police Submit* request built two ways: through zeep, as the SOAP connector does, and
with lxml directly, element by element in the XSD's order.

Both end in the bytes zeep's transport would post (``etree.tostring`` with declaration,
UTF-8). ``same_document`` checks once, before timing, that the two are the same XML
(namespaces, element order, text), so the comparison is between equals. zeep and lxml values
stay inside this module; callers get bytes and booleans.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs; stays here
from zeep import Client, Settings

from mappings.hukou import SoapCall

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:cn:gov:police:hukou:2026"
BINDING = f"{{{NS}}}HukouBinding"
# hukou.xsd, SubmitBirthRegistrationRequest and the types it uses, in sequence order.
ORDER: Mapping[str, tuple[str, ...]] = {
    "SubmitBirthRegistrationRequest": (
        "RequestId", "Child", "Mother", "Father", "Household", "MarriageCertificateNo",
        "BirthCertificateNo",
    ),
    "Child": ("Name", "Sex", "BirthDateTime", "BirthPlace"),
    "Mother": ("Name", "IdType", "IdNumber"),
    "Father": ("Name", "IdType", "IdNumber"),
    "Household": ("HeadIdNumber", "RelationToHead", "AddressDivision", "AddressDetail"),
}  # fmt: skip


def zeep_builder(call: SoapCall) -> Callable[[], bytes]:
    """A function building ``call``'s request through zeep (WSDL loaded here, once)."""
    wsdl = resources.files("contracts").joinpath("hukou", "hukou.wsdl")
    with resources.as_file(wsdl) as path:
        client = Client(  # type: ignore[no-untyped-call]
            str(path),
            settings=Settings(strict=True, forbid_dtd=True, forbid_entities=True),
        )
    service = client.create_service(BINDING, "http://127.0.0.1:9/hukou")  # type: ignore[no-untyped-call]

    def build() -> bytes:
        envelope = client.create_message(service, call.operation, **call.body)  # type: ignore[no-untyped-call]
        return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))

    return build


def lxml_builder(call: SoapCall) -> Callable[[], bytes]:
    """A function building the same request with lxml directly (``SubElement`` in the XSD's
    order; birth registration only)."""
    root = f"{call.operation}Request"
    if root not in ORDER:
        raise ValueError(f"the lxml builder knows only {', '.join(ORDER)}, not {root}")
    envelope_tag, body_tag = f"{{{SOAP_ENV}}}Envelope", f"{{{SOAP_ENV}}}Body"
    nsmap = {"soap-env": SOAP_ENV}
    hk_map = {"ns0": NS}

    def add(parent: Any, name: str, value: Any, nsmap: Mapping[str, str] | None = None) -> None:
        node = etree.SubElement(parent, f"{{{NS}}}{name}", nsmap=nsmap)
        if isinstance(value, Mapping):
            for key in ORDER[name]:
                if key in value:
                    add(node, key, value[key])
        else:
            node.text = _text(value)

    def build() -> bytes:
        document = etree.Element(envelope_tag, nsmap=nsmap)
        add(etree.SubElement(document, body_tag), root, call.body, hk_map)
        return bytes(etree.tostring(document, xml_declaration=True, encoding="utf-8"))

    return build


def same_document(a: bytes, b: bytes) -> bool:
    """The same elements (qualified names), in the same order, with the same text."""
    return bool(_shape(etree.fromstring(a)) == _shape(etree.fromstring(b)))


def _shape(node: Any) -> tuple[Any, ...]:
    return (node.tag, (node.text or "").strip(), tuple(_shape(child) for child in node))


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
