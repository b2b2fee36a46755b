"""The police service's SOAP 1.1 wire, for its simulator: the contract files, safe parsing,
validation against ``hukou.xsd``, answers and faults.

``Contract.parse`` refuses, with the fault the contract names (README "Faults"): XML that is
not well-formed or declares a DOCTYPE, a SOAP 1.2 envelope (VersionMismatch), a mandatory
header (MustUnderstand), a Body without exactly one known request element, a request the
XSD refuses (INVALID_REQUEST, with the paths at fault) and a citizen ID number whose check
digit fails (INVALID_ID_NUMBER). Fault texts name paths, never values.
"""

from __future__ import annotations

import copy
import re
import threading
from importlib import resources
from typing import Any, Final

from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs; stays here

from gateway.envelope.validators import citizen_id

__all__ = ["NS", "REQUESTS", "Contract", "SoapFault", "envelope", "fault", "tree"]

SOAP: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12: Final = "http://www.w3.org/2003/05/soap-envelope"
NS: Final = "urn:cn:gov:police:hukou:2026"
XS: Final = "http://www.w3.org/2001/XMLSchema"
WSDL_SOAP: Final = "http://schemas.xmlsoap.org/wsdl/soap/"
REQUESTS: Final = frozenset(
    {
        "SubmitBirthRegistrationRequest",
        "SubmitDeregistrationRequest",
        "SubmitKinshipVerificationRequest",
        "SubmitHouseholdChangeRequest",
        "QueryCaseRequest",
    }
)
MAX_TEXT: Final = 200  # Text200Type


class SoapFault(Exception):
    """A SOAP 1.1 fault: ``kind`` is the faultcode, ``code`` goes in FaultDetail/Code."""

    def __init__(self, kind: str, code: str, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind, self.code, self.message, self.fields = kind, code, message, fields


def short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _parser() -> Any:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


class Contract:
    """``hukou.xsd`` compiled once and the packaged WSDL. Blocking: build and call it in a
    worker thread. Validation is serialised because an ``XMLSchema`` is not thread-safe."""

    def __init__(self) -> None:
        folder = resources.files("contracts").joinpath("hukou")
        self.xsd: bytes = folder.joinpath("hukou.xsd").read_bytes()
        self.wsdl: bytes = folder.joinpath("hukou.wsdl").read_bytes()
        self._schema = etree.XMLSchema(etree.fromstring(self.xsd, _parser()))
        self._lock = threading.Lock()

    def served_wsdl(self, url: str) -> bytes:
        """The WSDL with this server's address and schema location."""
        root = etree.fromstring(self.wsdl, _parser())
        for node in root.iter(f"{{{XS}}}import"):
            node.set("schemaLocation", f"{url}?xsd=hukou.xsd")
        for node in root.iter(f"{{{WSDL_SOAP}}}address"):
            node.set("location", url)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))

    def parse(self, body: bytes) -> tuple[str, Any]:
        """The request element's local name and a detached copy of it, valid per the XSD."""
        try:
            root = etree.fromstring(body, _parser())
        except etree.XMLSyntaxError:
            raise SoapFault("Client", "MALFORMED_XML", "request is not well-formed XML") from None
        if root.getroottree().docinfo.doctype:
            raise SoapFault("Client", "DTD_FORBIDDEN", "a DOCTYPE is not allowed")
        if root.tag == f"{{{SOAP12}}}Envelope":
            raise SoapFault("VersionMismatch", "SOAP_VERSION", "this service speaks SOAP 1.1")
        if root.tag != f"{{{SOAP}}}Envelope":
            raise SoapFault("Client", "NOT_SOAP", "root element is not a SOAP 1.1 Envelope")
        for header in root.findall(f"{{{SOAP}}}Header/*"):
            if header.get(f"{{{SOAP}}}mustUnderstand") in ("1", "true"):
                raise SoapFault("MustUnderstand", "HEADER", "a mandatory header is not understood")
        children = root.findall(f"{{{SOAP}}}Body/*")
        if len(children) != 1:
            raise SoapFault("Client", "BODY", "the Body must hold exactly one request element")
        element = copy.deepcopy(children[0])
        namespace, _, name = str(element.tag)[1:].partition("}")
        if namespace != NS or name not in REQUESTS:
            raise SoapFault("Client", "UNKNOWN_OPERATION", "the request element is not known")
        errors = self.errors(element)
        if errors:
            fields = tuple(dict.fromkeys(path for path, _ in errors))
            reasons = "; ".join(f"{path or name}: {why}" for path, why in errors[:10])
            raise SoapFault(
                "Client", "INVALID_REQUEST", short(f"invalid request: {reasons}"), fields
            )
        if bad := _bad_citizen_ids(element):
            raise SoapFault("Client", "INVALID_ID_NUMBER", "citizen ID check failed", bad)
        return name, element

    def errors(self, element: Any) -> list[tuple[str, str]]:
        """(path under the element, reason without the value) for each XSD error."""
        with self._lock:
            if self._schema.validate(element):
                return []
            return [(_local(e.path), _why(e.type_name, e.message)) for e in self._schema.error_log]

    def check_answer(self, answer: Any) -> None:
        """The service holds itself to the contract too: an invalid answer is its own bug."""
        if problems := self.errors(answer):
            raise SoapFault("Server", "INTERNAL_ERROR", short(f"invalid answer: {problems}"))


def _local(path: str) -> str:
    """``/ns0:Req/ns0:Relatives/ns0:Relative[2]`` → ``Relatives/Relative[2]``."""
    return "/".join(step.rpartition(":")[2] for step in path.strip("/").split("/")[1:])


def _why(type_name: str, message: str) -> str:
    """lxml's reason without the offending value (it may be personal data)."""
    reason = str(type_name).removeprefix("SCHEMAV_").lower()
    expected = re.search(r"Expected is (\(.*?\))", str(message))
    if expected is None:
        return reason
    names = re.sub(r"\{[^}]*\}", "", expected[1])
    return f"{reason}, expected {names}"


def _bad_citizen_ids(element: Any) -> tuple[str, ...]:
    """Paths of HeadIdNumber, and of IdNumber after IdType 111, failing GB 11643."""
    bad: list[str] = []
    for node in element.iter(f"{{{NS}}}HeadIdNumber", f"{{{NS}}}IdNumber"):
        previous = node.getprevious()
        resident = str(node.tag).endswith("HeadIdNumber") or (
            previous is not None and previous.text == "111"
        )
        if not resident:
            continue
        try:
            citizen_id(node.text or "")
        except ValueError:
            bad.append(_local(element.getroottree().getpath(node)))
    return tuple(bad)


# --- answers ---------------------------------------------------------------------------
def tree(name: str, children: list[Any]) -> Any:
    """``hk:<name>`` from ``(tag, value)`` pairs (None left out, date-times in ISO 8601)
    and ready elements."""
    element = etree.Element(f"{{{NS}}}{name}", nsmap={"hk": NS})
    for child in children:
        if not isinstance(child, tuple):
            element.append(child)
            continue
        tag, value = child
        if value is None:
            continue
        if isinstance(value, etree._Element):
            element.append(value)
            continue
        sub = etree.SubElement(element, f"{{{NS}}}{tag}")
        sub.text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return element


def _wrap(content: Any) -> bytes:
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP, "hk": NS})
    etree.SubElement(root, f"{{{SOAP}}}Body").append(content)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def envelope(answer: Any) -> bytes:
    return _wrap(answer)


def fault(error: SoapFault) -> bytes:
    node = etree.Element(f"{{{SOAP}}}Fault", nsmap={"soap": SOAP})
    etree.SubElement(node, "faultcode").text = f"soap:{error.kind}"
    etree.SubElement(node, "faultstring").text = error.message
    detail = tree("FaultDetail", [("Code", error.code), ("Message", error.message)])
    for path in error.fields:
        etree.SubElement(detail, f"{{{NS}}}Field").text = path
    etree.SubElement(node, "detail").append(detail)
    return _wrap(node)
