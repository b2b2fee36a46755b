"""The one XML policy: every XML document that comes from outside the gateway is read here.

Three doors take XML in, and all three go through this module: hospital answer files
(``filedrop_codecs``), the police service's SOAP answers and faults, and the WSDL and XSD
files zeep loads (``soap``). The rules, the same at every door:

* **size first**: a document is refused above ``max_bytes`` before any parsing; a SOAP answer
  or a WSDL is never even read past that cap (decompressed bytes are counted);
* **no DTD at all**: a document with a ``<!DOCTYPE`` or ``<!ENTITY`` is refused outright,
  before parsing when its bytes show one (in UTF-8, -16 or -32), after parsing otherwise; the
  parser never loads a DTD, expands an entity or opens a connection in between (XXE with a
  file or a URL, billion laughs and quadratic blow-up all end as ``xml_doctype``);
* **depth**: more than ``max_depth`` nested elements is refused while parsing, chunk by chunk
  (libxml2's own limit of 256 without ``huge_tree`` is the backstop), and libxml2 keeps its
  10 MB limit on one text node (``huge_tree`` stays off);
* **zeep** gets the same through ``zeep_settings`` (``forbid_dtd``, ``forbid_entities``,
  ``forbid_external``, no huge trees) and ``ContractTransport``: a local WSDL is loaded with no
  socket at all and only from files under its own folder (an import of ``/etc/passwd``,
  ``../secret.xsd`` or ``http://…`` is refused); a WSDL configured as a URL may import from
  that same origin only; every document loaded is vetted by ``parse`` before zeep parses it;
* **SOAP answers** (posted by the connector's own HTTP client, on the event loop) are read
  only for the statuses ``answer_is_read`` names, up to the cap (``read_capped``), and vetted
  by ``vet_answer`` before zeep parses them.

Every refusal is ``UnsafeXml`` (a ``Permanent``); its ``code`` names the rule: ``xml_too_large``,
``xml_doctype``, ``xml_too_deep``, ``xml_malformed`` or ``xml_outside`` (a load outside the
allowed folder or origin). Messages name the rule and the limit, never the document's values.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from contextlib import closing
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from urllib.request import url2pathname

from lxml import etree
from zeep import Settings
from zeep.exceptions import Fault
from zeep.transports import Transport

from gateway.errors import Permanent

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "ContractTransport",
    "UnsafeXml",
    "answer_is_read",
    "parse",
    "read_capped",
    "vet_answer",
    "zeep_settings",
]

MAX_BYTES: Final = 1 << 20  # every document this gateway reads is a few KiB
MAX_DEPTH: Final = 64  # SOAP envelopes nest ~8 deep, hospital files 4, the WSDL/XSD ~12
CHUNK: Final = 64 * 1024
_DTD_MARKERS: Final = tuple(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)  # every encoding an XML parser must detect on its own
_MAX_MESSAGE: Final = 200


class UnsafeXml(Permanent):
    """An XML document this gateway will not read; ``code`` names the rule it breaks."""


_OPTIONS: Final[dict[str, bool]] = {  # the lxml parser every read here uses
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_pis": True,
}


def parse(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    system: str | None = None,
    what: str = "document",
) -> Any:
    """The root element of ``data`` read under the policy, or ``UnsafeXml`` naming the rule."""
    if len(data) > max_bytes:
        raise UnsafeXml(f"{what} larger than {max_bytes} bytes", system, "xml_too_large")
    if any(marker in data for marker in _DTD_MARKERS):
        raise _doctype(what, system)
    pull = etree.XMLPullParser(events=("start", "end"), **_OPTIONS)
    depth = 0
    try:
        for offset in range(0, len(data), CHUNK):
            pull.feed(data[offset : offset + CHUNK])
            for event, _ in pull.read_events():
                depth += 1 if event == "start" else -1
                if depth > max_depth:
                    raise _too_deep(what, max_depth, system)
        root = pull.close()
    except etree.XMLSyntaxError as exc:
        raise _syntax(exc, what, max_depth, system) from None
    refuse_doctype(root, what, system)
    return root


def refuse_doctype(root: Any, what: str = "document", system: str | None = None) -> None:
    """Defence in depth: ``parse`` refuses a DOCTYPE by its bytes before parsing, so this
    check of the parsed tree should never fire; it stays for a DTD that reaches the parser
    in a form the byte scan does not know (tested by calling it directly)."""
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise _doctype(what, system)


def _doctype(what: str, system: str | None) -> UnsafeXml:
    return UnsafeXml(f"{what} declares a DOCTYPE or ENTITY: not allowed", system, "xml_doctype")


def _too_deep(what: str, max_depth: int, system: str | None) -> UnsafeXml:
    return UnsafeXml(f"{what} nests deeper than {max_depth} elements", system, "xml_too_deep")


def _syntax(exc: etree.XMLSyntaxError, what: str, max_depth: int, system: str | None) -> UnsafeXml:
    message = str(exc.msg or exc)
    if "Excessive depth" in message:
        return _too_deep(what, max_depth, system)
    if "amplification" in message or "entity reference loop" in message.lower():
        return _doctype(what, system)  # entities from a DTD the byte scan missed (an odd encoding)
    if "Text node too long" in message or "Huge input lookup" in message:
        return UnsafeXml(f"{what} has a text node over 10 MB", system, "xml_too_large")
    message = " ".join(message.split())[:_MAX_MESSAGE]
    return UnsafeXml(f"{what} is not well-formed XML: {message}", system, "xml_malformed")


# --- zeep ------------------------------------------------------------------------------------
def zeep_settings(*, remote: bool) -> Settings:
    """zeep's parse settings: strict, no DTD, no entity, no huge tree; no external reference
    unless the WSDL itself came over HTTP (``ContractTransport`` then keeps to its origin)."""
    return Settings(
        strict=True,
        xml_huge_tree=False,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=not remote,
    )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class ContractTransport(Transport):
    """zeep's ``Transport`` for loading the contract, held to the policy: loads stay inside the
    WSDL's folder (or, for a WSDL served over HTTP, its origin); every document is size-capped
    and vetted by ``parse`` before zeep reads it. Blocking, like zeep: a local WSDL loads at
    start, a served one in a worker thread. Answers never come through here: the connector
    posts on the event loop and reads each answer with ``answer_is_read``, ``read_capped``
    and ``vet_answer``; a ``post`` through zeep is refused."""

    def __init__(
        self,
        *,
        system: str,
        wsdl: str,
        timeout: float,
        max_bytes: int = MAX_BYTES,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        super().__init__(timeout=timeout, operation_timeout=timeout)  # type: ignore[no-untyped-call]
        self.session.headers["Accept-Encoding"] = "identity"
        self._system = system
        self._max_bytes = max_bytes
        self._max_depth = max_depth
        self.remote = _origin(wsdl)[0] in ("http", "https")
        self._origin = _origin(wsdl) if self.remote else None
        self._folder = None if self.remote else Path(wsdl).expanduser().resolve().parent

    def load(self, url: str) -> bytes:
        """A WSDL or XSD document, from where the policy allows only."""
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            if self._origin is None:
                raise self._outside(url, "no network fetch while loading a local WSDL")
            if _origin(url) != self._origin:
                raise self._outside(url, "another origin than the WSDL's")
            with closing(self.session.get(url, timeout=self.load_timeout, stream=True)) as resp:
                resp.raise_for_status()
                data = self._read(resp, "WSDL/XSD document")
        elif scheme in ("", "file"):  # a path
            path = Path(url2pathname(urlsplit(url).path) if scheme == "file" else url)
            real = path.expanduser().resolve()
            if self._folder is None or not real.is_relative_to(self._folder):
                raise self._outside(url, f"only files under {self._folder or 'no folder'}")
            with real.open("rb") as fh:
                data = fh.read(self._max_bytes + 1)
        else:
            raise self._outside(url, f"scheme {scheme!r}")
        self._vet(data, f"WSDL/XSD {Path(urlsplit(url).path).name or url[:80]}")
        return data

    def post(self, address: str, message: Any, headers: Any) -> Any:
        """Refused: an answer read here would bypass the connector's reading of it."""
        raise RuntimeError(
            "zeep's transport only loads the contract; post SOAP messages with the connector "
            "and read the answer with xmlsafe.read_capped and vet_answer"
        )

    def _read(self, response: Any, what: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            if size > self._max_bytes:
                raise UnsafeXml(
                    f"{what} larger than {self._max_bytes} bytes", self._system, "xml_too_large"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _vet(self, data: bytes, what: str) -> Any:
        return parse(
            data,
            max_bytes=self._max_bytes,
            max_depth=self._max_depth,
            system=self._system,
            what=what,
        )

    def _outside(self, url: str, rule: str) -> UnsafeXml:
        shown = url if len(url) <= _MAX_MESSAGE else url[: _MAX_MESSAGE - 1] + "…"
        return UnsafeXml(f"refused to load {shown}: {rule}", self._system, "xml_outside")


# --- SOAP answers ----------------------------------------------------------------------------
def answer_is_read(status: int, content_type: str) -> bool:
    """Whether a SOAP answer's body is read at all; the status comes first. Only a 200 (or 201,
    202), a 500 in XML (a SOAP fault) and a 4xx in ``application/soap+xml`` (a SOAP 1.2 fault: a
    ``Sender`` fault comes as 400) are read. Any other status — a proxy's HTML error page, a 503
    with a huge body — is an HTTP error whatever its body says, and the body stays unread."""
    return status in (200, 201, 202) or _is_fault(status, content_type)


def _is_fault(status: int, content_type: str) -> bool:
    content_type = content_type.lower()
    return (status == 500 and "xml" in content_type) or (
        400 <= status < 500 and "soap+xml" in content_type
    )


async def read_capped(
    chunks: AsyncIterable[bytes],
    *,
    max_bytes: int = MAX_BYTES,
    system: str | None = None,
    what: str = "answer",
) -> bytes:
    """A body read chunk by chunk (decompressed bytes, as the client hands them over), refused
    with ``xml_too_large`` as soon as it passes ``max_bytes``: it is never read further."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise UnsafeXml(f"{what} larger than {max_bytes} bytes", system, "xml_too_large")
        parts.append(chunk)
    return b"".join(parts)


def vet_answer(
    body: bytes,
    status: int,
    content_type: str,
    *,
    system: str | None = None,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> None:
    """A SOAP answer (read by ``read_capped``) vetted by ``parse`` before zeep reads it: one
    that breaks the policy is refused (``UnsafeXml``); a not-well-formed one is left to zeep,
    which tells HTTP errors from it. A SOAP 1.2 fault is raised as its SOAP 1.1 equivalent
    (``Sender`` → ``Client``, ``Receiver`` → ``Server``) with its reason, whatever the binding,
    so the department's words reach the dead letter."""
    if not body.strip():
        return
    try:
        root = parse(body, max_bytes=max_bytes, max_depth=max_depth, system=system, what="answer")
    except UnsafeXml as exc:
        if exc.code != "xml_malformed":
            raise
        return
    if _is_fault(status, content_type):
        _raise_soap12_fault(root)


SOAP12_ENV: Final = "http://www.w3.org/2003/05/soap-envelope"
_SOAP11_CODES: Final = {"Sender": "Client", "Receiver": "Server"}


def _raise_soap12_fault(root: Any) -> None:
    """A SOAP 1.2 fault (a root vetted by ``parse``) as zeep's ``Fault`` with the SOAP 1.1
    code; anything else returns, for zeep to read."""
    env = f"{{{SOAP12_ENV}}}"
    node = root.find(f"{env}Body/{env}Fault")
    if root.tag != f"{env}Envelope" or node is None:
        return
    value = (node.findtext(f"{env}Code/{env}Value") or "").strip()
    kind = value.rpartition(":")[2]
    raise Fault(  # type: ignore[no-untyped-call]
        message=(node.findtext(f"{env}Reason/{env}Text") or "").strip(),
        code=f"soap:{_SOAP11_CODES.get(kind, kind)}" if kind else None,
        detail=node.find(f"{env}Detail"),
    )
