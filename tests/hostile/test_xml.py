"""Hostile XML at every door, one suite: the same documents through the policy itself, a SOAP
answer from a real local HTTP server, a hospital answer file in a real folder and a WSDL.

Every case asserts the four things the issue asks: the error kind and a message naming the
rule (it fails fast: nothing is retried), peak memory growth under ``MEMORY_BOUND``, no
connection to a listener whose port the document names, and nothing reported or published.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from connectors import xmlsafe
from connectors.base import Decision, DepartmentRequest
from connectors.filedrop import FileDropResultSource
from connectors.soap import SoapConnector
from connectors.xmlsafe import UnsafeXml
from gateway.catalogue.fields import select
from gateway.catalogue.model import load
from gateway.envelope.model import ENVELOPE_ADAPTER, parse_envelope
from gateway.errors import ConfigurationError, Permanent, Retryable
from gateway.orchestration.messages import task_message
from gateway.runtime import Gateway
from gateway.settings import Settings, SystemConfig
from gateway.simulators.fleet import local_systems
from mappings.hospital import NS as HOSPITAL_NS
from tests.hostile.kit import HOSTILE, IDS, MEMORY_BOUND, Hostile, Listener, Wrap, peak_growth
from tests.support.rabbit import Rabbit

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "contracts" / "hukou"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
HUKOU_NS = "urn:cn:gov:police:hukou:2026"
APP = "01936f0e-7a4b-7c3d-8e9f-0123456789ab"


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = Listener()
    yield sock
    sock.close()


def assert_refused(exc: BaseException, hostile: Hostile, code: str | None = None) -> None:
    assert isinstance(exc, Permanent) and not isinstance(exc, Retryable), repr(exc)
    assert exc.code == (code or hostile.code), str(exc)
    assert re.search(hostile.words, exc.detail), exc.detail


# --- 1. the policy itself ----------------------------------------------------------------------
@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
def test_the_policy_refuses(hostile: Hostile, listener: Listener) -> None:
    document = hostile.document(Wrap(b"<r>", b"</r>"), listener.port)
    with peak_growth() as peak, pytest.raises(UnsafeXml) as info:
        xmlsafe.parse(document, system="test")
    assert_refused(info.value, hostile)
    assert peak.growth < MEMORY_BOUND, peak
    assert listener.connections() == 0


def test_a_huge_text_node_is_refused_even_under_a_huge_cap(listener: Listener) -> None:
    """With the size cap out of the way, libxml2's own limits still hold (no huge tree)."""
    huge = next(h for h in HOSTILE if h.name == "huge_text_node")
    document = huge.document(Wrap(b"<r>", b"</r>"), listener.port)
    with peak_growth() as peak, pytest.raises(UnsafeXml) as info:
        xmlsafe.parse(document, max_bytes=1 << 30)
    assert info.value.code == "xml_too_large" and "text node over 10 MB" in info.value.detail
    assert peak.growth < MEMORY_BOUND, peak


def test_the_policy_reads_ordinary_documents() -> None:
    root = xmlsafe.parse(b'<?xml version="1.0"?><r><a>\xe7\x8e\x8b</a><!-- c --></r>')
    assert root.findtext("a") == "王"
    deep = b"<d>" * xmlsafe.MAX_DEPTH + b"</d>" * xmlsafe.MAX_DEPTH
    assert xmlsafe.parse(deep).tag == "d"  # the cap itself is allowed
    with pytest.raises(UnsafeXml) as info:
        xmlsafe.parse(b"<d>" + deep + b"</d>")
    assert info.value.code == "xml_too_deep"
    with pytest.raises(UnsafeXml) as info:
        xmlsafe.parse(b"<r><unclosed></r>")
    assert info.value.code == "xml_malformed"


# --- 2. a SOAP answer from the police service --------------------------------------------------
@dataclass
class Answer:
    body: bytes = b""
    status: int = 200
    posts: int = 0
    content_type: str = "text/xml; charset=utf-8"


@pytest.fixture
async def soap_server() -> AsyncIterator[tuple[str, Answer]]:
    answer = Answer()

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        answer.posts += 1
        response = web.StreamResponse(
            status=answer.status, headers={"Content-Type": answer.content_type}
        )
        response.content_length = len(answer.body)
        await response.prepare(request)
        view = memoryview(answer.body)
        try:  # streamed: the server's own buffers stay small while the client reads
            for offset in range(0, len(view), 64 * 1024):
                await response.write(view[offset : offset + 64 * 1024])
        except ConnectionError:
            pass  # the client stopped reading at its cap
        return response

    app = web.Application()
    app.router.add_post("/hukou", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hukou", answer
    await runner.cleanup()


def birth_request() -> DepartmentRequest:
    raw = (ROOT / "contracts/envelope/examples/valid/newborn-yizhang-window.json").read_bytes()
    envelope = json.loads(ENVELOPE_ADAPTER.dump_json(parse_envelope(raw)))
    step = load().matter("newborn").step("hukou")
    fields = select(envelope, step.needs, {"birth_certificate_no": "Q430012345"})
    return DepartmentRequest(f"{APP}.hukou", APP, "newborn", "hukou", "hukou",
                             step.operation, 1, fields)  # fmt: skip


SOAP_WRAP = Wrap(
    f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
    f'<hk:Receipt xmlns:hk="{HUKOU_NS}"><hk:CaseNo>'.encode(),
    b"</hk:CaseNo></hk:Receipt></soap:Body></soap:Envelope>",
)


@pytest.mark.parametrize("status", [200, 500, 400], ids=["answer", "fault", "soap12-fault"])
@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
async def test_a_soap_answer_is_refused(
    hostile: Hostile, status: int, soap_server: tuple[str, Answer], listener: Listener
) -> None:
    url, answer = soap_server
    answer.body, answer.status = hostile.document(SOAP_WRAP, listener.port), status
    if status == 400:  # a SOAP 1.2 Sender fault comes as 400 in application/soap+xml
        answer.content_type = "application/soap+xml; charset=utf-8"
    connector = SoapConnector("hukou", SystemConfig(kind="soap", url=url, timeout_seconds=10))
    try:
        with peak_growth() as peak, pytest.raises(Permanent) as info:
            await connector.send(birth_request())
    finally:
        await connector.close()
    assert_refused(info.value, hostile)
    assert info.value.system == "hukou"
    assert peak.growth < MEMORY_BOUND, peak
    assert listener.connections() == 0


SOAP12_FAULT = """<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>
<env:Fault><env:Code><env:Value>env:{code}</env:Value></env:Code>
<env:Reason><env:Text xml:lang="en">{reason}</env:Text></env:Reason>
<env:Detail><hk:FaultDetail xmlns:hk="{ns}"><hk:Code>{detail}</hk:Code></hk:FaultDetail>
</env:Detail></env:Fault></env:Body></env:Envelope>"""


@pytest.mark.parametrize(
    ("status", "code", "error"), [(400, "Sender", Permanent), (500, "Receiver", Retryable)]
)
async def test_a_soap12_fault_brings_the_departments_reason(
    status: int, code: str, error: type[Exception], soap_server: tuple[str, Answer]
) -> None:
    """A SOAP 1.2 service says ``Sender`` with HTTP 400 in ``application/soap+xml``: read
    under the policy as a fault, its reason and code reach the error (and the dead letter),
    not a bare "HTTP 400"; ``Receiver`` (500) stays a retry."""
    url, answer = soap_server
    reason = "household head unknown"
    answer.status, answer.content_type = status, "application/soap+xml; charset=utf-8"
    answer.body = SOAP12_FAULT.format(
        code=code, reason=reason, ns=HUKOU_NS, detail="HEAD_UNKNOWN"
    ).encode()
    connector = SoapConnector("hukou", SystemConfig(kind="soap", url=url, timeout_seconds=10))
    try:
        with pytest.raises(error) as info:
            await connector.send(birth_request())
    finally:
        await connector.close()
    assert reason in str(info.value) and info.value.code == "HEAD_UNKNOWN"  # type: ignore[attr-defined]


@pytest.mark.broker
async def test_the_connector_role_dead_letters_a_hostile_answer_at_once(
    soap_server: tuple[str, Answer],
    settings_for: Callable[..., Settings],
    rabbit: Rabbit,
    listener: Listener,
    tmp_path: Path,
) -> None:
    """What the runner does with the refusal: one try, no retry, the task parked with the
    policy's reason and a ``dead_lettered`` result for the orchestrator (which blocks the
    application); nothing else is published."""
    url, answer = soap_server
    laughs = next(h for h in HOSTILE if h.name == "billion_laughs")
    answer.body = laughs.document(SOAP_WRAP, listener.port)
    systems = local_systems(tmp_path / "systems")  # the catalogue wants all four configured
    systems["hukou"] = SystemConfig(kind="soap", url=url, timeout_seconds=10)
    async with Gateway(settings_for(systems=systems), roles=["connector:hukou"]) as gw:
        results = await asyncio.to_thread(rabbit.bind_test_queue, "gw.results", "hukou.#")
        request = birth_request()
        await gw.publish("gw.tasks", "hukou.newborn.hukou", task_message(request, "test"))
        (letter,) = await rabbit.aget_all("gw.dead-letters", wait=15, at_least=1)
        (result,) = [r.json() for r in await rabbit.aget_all(results, wait=5, at_least=1)]
    headers = letter.properties.headers
    assert headers["x-error-kind"] == "permanent" and headers["x-attempt"] == 1
    assert "declares a DOCTYPE or ENTITY: not allowed" in str(headers["x-reason"])
    assert (result["kind"], result["task_id"]) == ("dead_lettered", request.task_id)
    assert answer.posts == 1  # asked once: a refusal is not retried
    assert listener.connections() == 0


# --- 3. a hospital answer file ------------------------------------------------------------------
class Reports:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    async def __call__(self, decision: Decision) -> None:
        self.decisions.append(decision)


@pytest.fixture
def hospital(tmp_path: Path) -> SystemConfig:
    base = tmp_path / "hospital"
    for name in ("outbox", "inbox", "archive", "error"):
        (base / name).mkdir(parents=True)
    return SystemConfig(kind="filedrop", outbox=base / "outbox", inbox=base / "inbox",
                        archive=base / "archive", error=base / "error")  # fmt: skip


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


HOSPITAL_WRAP = Wrap(
    f'<CertificateResult xmlns="{HOSPITAL_NS}" version="1.0"><TaskId>'.encode(),
    b"</TaskId></CertificateResult>",
)


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
async def test_a_hospital_answer_file_is_refused(
    hostile: Hostile, hospital: SystemConfig, listener: Listener
) -> None:
    inbox, error = Path(str(hospital.inbox)), Path(str(hospital.error))
    name = "0190a0b0-0000-7000-8000-000000000001.birth_certificate.result.xml"
    document = hostile.document(HOSPITAL_WRAP, listener.port)
    (inbox / name).write_bytes(document)
    (inbox / f"{name}.sha256").write_text(f"{hashlib.sha256(document).hexdigest()}  {name}\n")
    del document
    source = FileDropResultSource("hospital", hospital, scan_seconds=0.01)
    reports = Reports()
    with peak_growth() as peak:
        counts = await source.scan(reports)
    assert (counts.parked, counts.reported, reports.decisions) == (1, 0, [])
    assert names(error) == [name, f"{name}.reason.txt", f"{name}.sha256"]
    assert names(inbox) == []
    reason = read_text(error / f"{name}.reason.txt")
    assert re.search(hostile.words, reason), reason
    assert peak.growth < MEMORY_BOUND, peak
    assert listener.connections() == 0


# --- 4. the WSDL and what it imports -------------------------------------------------------------
@pytest.fixture
def contract(tmp_path: Path) -> Path:
    """A copy of the police contract in a folder of its own, with a copy of its XSD outside."""
    folder = tmp_path / "contract"
    folder.mkdir()
    for name in ("hukou.wsdl", "hukou.xsd"):
        shutil.copy(CONTRACT / name, folder / name)
    (tmp_path / "outside").mkdir()
    shutil.copy(CONTRACT / "hukou.xsd", tmp_path / "outside" / "hukou.xsd")
    return folder


def load_wsdl(wsdl: str | Path) -> SoapConnector:
    config = SystemConfig(kind="soap", wsdl=str(wsdl), url="http://127.0.0.1:9/hukou")
    return SoapConnector("hukou", config)


def test_the_contract_copy_loads(contract: Path) -> None:
    """The control: the copies used below load, so each refusal is the policy's doing."""
    connector = load_wsdl(contract / "hukou.wsdl")
    assert connector._load() is not None


def _wsdl_wrap(contract: Path) -> Wrap:
    text = (contract / "hukou.wsdl").read_bytes()
    text = text[text.index(b"<wsdl:definitions") :]
    end = text.index(b">") + 1  # the end of the opening tag of the root
    return Wrap(text[:end] + b"<wsdl:documentation>", b"</wsdl:documentation>" + text[end:])


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
def test_a_hostile_wsdl_is_refused(hostile: Hostile, contract: Path, listener: Listener) -> None:
    wsdl = contract / "hukou.wsdl"
    wsdl.write_bytes(hostile.document(_wsdl_wrap(contract), listener.port))
    with peak_growth() as peak, pytest.raises(ConfigurationError) as info:
        load_wsdl(wsdl)
    assert_refused(info.value, hostile)
    assert "cannot load the WSDL" in info.value.detail
    assert peak.growth < MEMORY_BOUND, peak
    assert listener.connections() == 0


IMPORTS = {
    "absolute_path_outside": "{outside}/hukou.xsd",
    "relative_path_outside": "../outside/hukou.xsd",
    "file_url_outside": "file://{outside}/hukou.xsd",
    "etc_passwd": "/etc/passwd",
    "network_url": "http://127.0.0.1:{port}/hukou.xsd",
    "symlink_outside": "linked.xsd",
}


@pytest.mark.parametrize("target", list(IMPORTS), ids=list(IMPORTS))
def test_a_wsdl_import_outside_its_folder_is_refused(
    target: str, contract: Path, listener: Listener
) -> None:
    (contract / "linked.xsd").symlink_to(contract.parent / "outside" / "hukou.xsd")
    location = IMPORTS[target].format(outside=contract.parent / "outside", port=listener.port)
    wsdl = contract / "hukou.wsdl"
    wsdl.write_text(wsdl.read_text().replace('schemaLocation="hukou.xsd"',
                                             f'schemaLocation="{location}"'))  # fmt: skip
    with pytest.raises(ConfigurationError) as info:
        load_wsdl(wsdl)
    assert info.value.code == "xml_outside", str(info.value)
    assert "refused to load" in info.value.detail
    assert listener.connections() == 0


def test_a_wsdl_import_of_another_wsdl_over_the_network_is_refused(
    contract: Path, listener: Listener
) -> None:
    wsdl = contract / "hukou.wsdl"
    wsdl.write_text(wsdl.read_text().replace("<wsdl:types>", (
        f'<wsdl:import namespace="urn:evil" location="http://127.0.0.1:{listener.port}/x.wsdl"/>'
        "<wsdl:types>"
    ), 1))  # fmt: skip
    with pytest.raises(ConfigurationError) as info:
        load_wsdl(wsdl)
    assert info.value.code == "xml_outside", str(info.value)
    assert listener.connections() == 0


async def test_a_served_wsdl_may_not_import_from_another_origin(
    contract: Path, listener: Listener
) -> None:
    evil = f"http://127.0.0.1:{listener.port}/hukou.xsd"
    served = (contract / "hukou.wsdl").read_bytes().replace(b"hukou.xsd", evil.encode())

    async def wsdl(_request: web.Request) -> web.Response:
        return web.Response(body=served, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/hukou", wsdl)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = SystemConfig(kind="soap", wsdl=f"http://127.0.0.1:{port}/hukou?wsdl")
    connector = SoapConnector("hukou", config)  # a served WSDL loads on the first call
    try:
        with pytest.raises(ConfigurationError) as info:
            await connector.send(birth_request())
    finally:
        await connector.close()
        await runner.cleanup()
    assert info.value.code == "xml_outside" and "another origin" in info.value.detail
    assert listener.connections() == 0


# --- the checks behind the byte scan, reached directly ---------------------------------------
def test_the_post_parse_doctype_check_refuses_what_a_plain_parser_let_through() -> None:
    from lxml import etree

    from connectors.xmlsafe import refuse_doctype

    plain = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    with_dtd = etree.fromstring(b'<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>', plain)
    with pytest.raises(UnsafeXml) as info:
        refuse_doctype(with_dtd, "answer", "hukou")
    assert info.value.code == "xml_doctype"
    refuse_doctype(etree.fromstring(b"<r>fine</r>", plain))  # no DOCTYPE: nothing to say


def test_contract_files_are_read_under_the_same_xml_policy() -> None:
    from gateway.compat.xsd import declarations, operations

    schema = b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>'
    assert declarations(schema) == {}
    for reader in (declarations, operations):
        with pytest.raises(ValueError, match="DOCTYPE"):
            reader(b'<!DOCTYPE s [<!ENTITY e "x">]>' + schema)
        with pytest.raises(ValueError, match="nests deeper"):
            reader(b"<a>" * 100 + b"</a>" * 100)
