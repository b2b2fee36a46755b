"""The SOAP connector against the police simulator over real sockets.

Every request the connector sends is validated again here, by the test's own lxml
``XMLSchema`` of contracts/hukou/hukou.xsd (the simulator validates too, independently).
Decisions are awaited by polling ``check`` as the gateway's timer does; no timed assertions.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from lxml import etree

from connectors.base import Decision, DepartmentRequest, Gap
from connectors.soap import SoapConnector
from gateway.catalogue.fields import select
from gateway.catalogue.model import load
from gateway.envelope.model import ENVELOPE_ADAPTER, parse_envelope
from gateway.envelope.validators import citizen_id
from gateway.errors import Permanent, Retryable
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, Verdict
from gateway.simulators.hukou import HukouSimulator
from gateway.simulators.ledger import EffectLedger
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "contracts" / "envelope" / "examples" / "valid"
FIXTURES = ROOT / "tests" / "fixtures" / "hukou"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:cn:gov:police:hukou:2026"
APP = "01936f0e-7a4b-7c3d-8e9f-0123456789ab"
PROVIDED = {"birth_certificate_no": "Q430012345", "death_certificate_no": "S4310222611180007"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
SCHEMA = etree.XMLSchema(etree.parse(str(ROOT / "contracts" / "hukou" / "hukou.xsd"), _PARSER))


def _request(example: str, key: str, app: str = APP, **edits: Any) -> DepartmentRequest:
    """The task as the gateway builds it; ``edits`` replace envelope paths (``a__b=v``)."""
    parsed = parse_envelope((EXAMPLES / f"{example}.json").read_bytes())
    envelope = json.loads(ENVELOPE_ADAPTER.dump_json(parsed))
    for path, value in edits.items():
        *parents, last = path.split("__")
        node = envelope
        for part in parents:
            node = node[part]
        node[last] = value
    step = load().matter(envelope["matter"]).step(key)
    fields = select(envelope, step.needs, PROVIDED)
    return DepartmentRequest(
        f"{app}.{key}", app, envelope["matter"], key, "hukou", step.operation, 1, fields
    )


def _change_request(name: str, app: str = APP) -> DepartmentRequest:
    data = json.loads((FIXTURES / "fields" / f"{name}.json").read_text(encoding="utf-8"))
    return DepartmentRequest(
        f"{app}.{data['task']}", app, data["matter"], data["task"], "hukou",
        data["operation"], 1, data["fields"],
    )  # fmt: skip


def _birth(app: str = APP, **edits: Any) -> DepartmentRequest:
    return _request("newborn-yizhang-window", "hukou", app, **edits)


def assert_sent_valid(simulator: HukouSimulator) -> int:
    """Every envelope received so far is SOAP 1.1 with one body element valid per the XSD;
    returns how many were submissions (queries are checked too, not counted)."""
    submissions = 0
    for raw in simulator.received:
        root = etree.fromstring(raw, _PARSER)
        assert root.tag == f"{{{SOAP}}}Envelope"
        (element,) = root.find(f"{{{SOAP}}}Body")
        assert SCHEMA.validate(copy.deepcopy(element)), SCHEMA.error_log
        submissions += etree.QName(element).localname.startswith("Submit")
    return submissions


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[EffectLedger]:
    effects = EffectLedger(tmp_path / "ledger.sqlite3")
    yield effects
    effects.close()


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour(seed=7)


@pytest.fixture
async def simulator(behaviour: Behaviour, ledger: EffectLedger) -> AsyncIterator[HukouSimulator]:
    sim = HukouSimulator(
        SystemConfig(kind="soap", url="http://127.0.0.1:0/hukou"), behaviour, ledger
    )
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def connector(simulator: HukouSimulator) -> AsyncIterator[SoapConnector]:
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=simulator.url, timeout_seconds=5))
    yield soap
    await soap.close()


async def _decided(connector: SoapConnector, request: DepartmentRequest, case: str | None) -> Any:
    async def probe() -> Decision | None:
        found = await connector.check(request, case)
        return found if found is not None and found.outcome != "in_progress" else None

    return await eventually(probe)


# --- happy path ---------------------------------------------------------------------------
async def test_birth_registration_gives_a_valid_citizen_id(
    connector: SoapConnector, simulator: HukouSimulator, ledger: EffectLedger
) -> None:
    request = _birth()
    receipt = await connector.send(request)
    assert receipt.case_number and receipt.accepted_at and receipt.decision is None

    decision = await _decided(connector, request, receipt.case_number)
    assert decision is not None and decision.outcome == "completed"
    new_id = decision.provides["citizen_id"]
    assert citizen_id(new_id) == new_id
    assert new_id[:14] == "431022" + "20261120"  # household county, birth date
    assert int(new_id[16]) % 2 == 1  # a boy
    assert decision.case_number == receipt.case_number and decision.certificate

    effects = await ledger.effects(APP)
    assert [(e.system, e.task, e.result["citizen_id"]) for e in effects] == [
        ("hukou", "hukou", new_id)
    ]
    assert assert_sent_valid(simulator) == 1


@pytest.mark.parametrize(
    ("build", "provides"),
    [
        (lambda: _request("newborn-minimal-online", "hukou"), "citizen_id"),
        (lambda: _request("after-death-mobile", "hukou_cancellation"), "deregistration_no"),
        (lambda: _request("after-death-mobile", "kinship"), "kinship_verification_no"),
        (lambda: _change_request("housing-move-in"), "household_change_no"),
        (lambda: _change_request("marriage-marital-status"), "household_change_no"),
    ],
    ids=["birth-minimal", "deregistration", "kinship", "move-in", "marital-status"],
)
async def test_every_operation_completes(
    build: Any, provides: str, connector: SoapConnector, simulator: HukouSimulator
) -> None:
    request = build()
    receipt = await connector.send(request)
    decision = await _decided(connector, request, receipt.case_number)
    assert decision.outcome == "completed"
    assert list(decision.provides) == [provides] and decision.provides[provides]
    assert assert_sent_valid(simulator) == 1


async def test_pending_until_the_police_decide(
    connector: SoapConnector, behaviour: Behaviour, simulator: HukouSimulator
) -> None:
    behaviour.decision_delay_seconds = 3600
    request = _birth()
    receipt = await connector.send(request)
    assert await connector.check(request, receipt.case_number) is None
    assert await connector.check(request, None) is None  # by RequestId when no case number
    behaviour.decision_delay_seconds = 0
    assert (await _decided(connector, request, None)).outcome == "completed"


# --- idempotency --------------------------------------------------------------------------
async def test_resend_with_the_same_task_id_applies_nothing_twice(
    connector: SoapConnector, simulator: HukouSimulator, ledger: EffectLedger
) -> None:
    request = _birth()
    first = await connector.send(request)
    assert await connector.send(request) == first
    decision = await _decided(connector, request, first.case_number)
    assert await connector.send(request) == first  # after the decision too
    assert await _decided(connector, request, first.case_number) == decision

    assert await ledger.delivery_count("hukou") == 3
    assert len(await ledger.effects(APP)) == 1
    assert await ledger.double_effects() == []
    assert assert_sent_valid(simulator) == 3


async def test_the_ledger_sees_a_second_key_for_the_same_task(
    connector: SoapConnector, ledger: EffectLedger
) -> None:
    """The simulator dedupes by key only, as the real system would: the ledger shows it."""
    request = _birth()
    retry = dataclasses.replace(request, task_id=f"{request.task_id}.r1")
    for each in (request, retry):
        await _decided(connector, each, (await connector.send(each)).case_number)
    assert await ledger.double_effects() == [("hukou", APP, "hukou", 2)]


async def test_same_task_id_with_other_content_is_refused(connector: SoapConnector) -> None:
    await connector.send(_birth())
    with pytest.raises(Permanent) as caught:
        await connector.send(_birth(subjects__child__name="王子涵"))
    assert caught.value.code == "DUPLICATE_REQUEST"


# --- failures -----------------------------------------------------------------------------
async def test_server_fault_is_retryable(
    connector: SoapConnector, behaviour: Behaviour, ledger: EffectLedger
) -> None:
    behaviour.failure_rate = 1.0
    with pytest.raises(Retryable) as caught:
        await connector.send(_birth())
    assert caught.value.code == "SERVICE_UNAVAILABLE" and caught.value.system == "hukou"
    with pytest.raises(Retryable):
        await connector.check(_birth(), None)
    assert await ledger.delivery_count("hukou") == 0


async def test_outage_window_then_recovery(connector: SoapConnector, behaviour: Behaviour) -> None:
    behaviour.outages.append((time.time() - 1, time.time() + 3600))
    with pytest.raises(Retryable):
        await connector.send(_birth())
    behaviour.outages.clear()
    assert (await connector.send(_birth())).case_number


async def test_client_fault_is_permanent_and_names_the_field(
    connector: SoapConnector, simulator: HukouSimulator, ledger: EffectLedger
) -> None:
    long_name = "王" * 51  # the envelope would refuse it; the XSD refuses it as well
    with pytest.raises(Permanent) as caught:
        await connector.send(_birth(subjects__child__name=long_name))
    assert caught.value.code == "INVALID_REQUEST"
    assert "Child/Name" in caught.value.detail and long_name not in caught.value.detail
    assert await ledger.delivery_count("hukou") == 0
    with pytest.raises(AssertionError):  # the test's own validator agrees with the simulator
        assert_sent_valid(simulator)


async def test_unknown_case_is_permanent(connector: SoapConnector) -> None:
    with pytest.raises(Permanent) as caught:
        await connector.check(_birth(), "HK20990101999999")
    assert caught.value.code == "CASE_NOT_FOUND"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_retryable() -> None:
    url = f"http://127.0.0.1:{_free_port()}/hukou"
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=url, timeout_seconds=2))
    try:
        with pytest.raises(Retryable, match="unreachable"):
            await soap.send(_birth())
    finally:
        await soap.close()


@pytest.fixture
async def odd_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A server that answers whatever the test sets in ``script``."""
    script: dict[str, Any] = {"status": 503, "body": b"", "sleep": 0.0}

    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(script["sleep"])
        return web.Response(status=script["status"], body=script["body"], content_type="text/xml")

    app = web.Application()
    app.router.add_post("/hukou", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hukou", script
    await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "sleep", "error"),
    [
        (503, b"", 0.0, Retryable),
        (502, b"<html>bad gateway</html>", 0.0, Retryable),
        (429, b"", 0.0, Retryable),
        (200, b"", 3.0, Retryable),  # times out
        (404, b"", 0.0, Permanent),
        (200, b"not xml at all", 0.0, Permanent),
    ],
)
async def test_http_failures(
    odd_server: tuple[str, dict[str, Any]], status: int, body: bytes, sleep: float, error: type
) -> None:
    url, script = odd_server
    script.update(status=status, body=body, sleep=sleep)
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=url, timeout_seconds=0.5))
    try:
        with pytest.raises(error):
            await soap.send(_birth())
    finally:
        await soap.close()


# --- verdicts -----------------------------------------------------------------------------
async def test_denied_by_application(connector: SoapConnector, behaviour: Behaviour) -> None:
    behaviour.by_application[APP] = Verdict("denied", reason="户主户籍不在本辖区")
    request = _birth()
    decision = await _decided(connector, request, (await connector.send(request)).case_number)
    assert (decision.outcome, decision.reason) == ("denied", "户主户籍不在本辖区")
    assert not decision.provides


async def test_correction_by_name_then_resubmission(
    connector: SoapConnector, behaviour: Behaviour, ledger: EffectLedger, simulator: HukouSimulator
) -> None:
    behaviour.by_name["王子轩"] = Verdict(
        "correction_requested", "姓名有误", gaps=[("Child/Name", "姓名与出生医学证明不一致")]
    )
    request = _birth()
    receipt = await connector.send(request)
    decision = await _decided(connector, request, receipt.case_number)
    assert decision.outcome == "correction_requested"
    assert decision.gaps == (Gap("subjects.child.name", "姓名与出生医学证明不一致"),)
    assert await ledger.effects(APP) == []

    corrected = _birth(subjects__child__name="王子涵")  # same task id, corrected content
    again = await connector.send(corrected)
    assert again.case_number == receipt.case_number
    assert (await _decided(connector, corrected, again.case_number)).outcome == "completed"
    assert len(await ledger.effects(APP)) == 1
    assert_sent_valid(simulator)


async def test_suspended_then_resumed(connector: SoapConnector, behaviour: Behaviour) -> None:
    behaviour.by_name["张秀英"] = Verdict("suspended", reason="需法院确认死亡")
    request = _request("after-death-mobile", "hukou_cancellation")
    case = (await connector.send(request)).case_number
    decision = await _decided(connector, request, case)
    assert (decision.outcome, decision.reason) == ("suspended", "需法院确认死亡")
    del behaviour.by_name["张秀英"]  # the special procedure ends

    async def completed() -> bool:
        found = await connector.check(request, case)
        return found is not None and found.outcome == "completed"

    assert await eventually(completed)


async def test_officer_asks_for_the_childs_sex(connector: SoapConnector) -> None:
    request = _birth(subjects__child__sex="9")
    decision = await _decided(connector, request, (await connector.send(request)).case_number)
    assert decision.outcome == "correction_requested"
    assert [g.field for g in decision.gaps] == ["subjects.child.sex"]


# --- the simulator's own contract ---------------------------------------------------------
async def _post(url: str, body: bytes, content_type: str = "text/xml") -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, etree.fromstring(await r.read(), _PARSER)


def _fault_code(root: Any) -> tuple[str, str]:
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    return fault.findtext("faultcode"), fault.findtext(f"detail/{{{NS}}}FaultDetail/{{{NS}}}Code")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>&x;'
            b"</e:Body></e:Envelope>",
            ("soap:Client", "DTD_FORBIDDEN"),
        ),
        (
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>',
            ("soap:VersionMismatch", "SOAP_VERSION"),
        ),
        (
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
            b'<QueryCaseRequest xmlns="urn:cn:gov:police:hukou:2026"><CaseNo>hk 1</CaseNo>'
            b"</QueryCaseRequest></e:Body></e:Envelope>",
            ("soap:Client", "INVALID_REQUEST"),
        ),
        (b"<unclosed>", ("soap:Client", "MALFORMED_XML")),
    ],
    ids=["xxe", "soap12", "invalid", "malformed"],
)
async def test_simulator_refuses_what_the_contract_refuses(
    simulator: HukouSimulator, body: bytes, expected: tuple[str, str]
) -> None:
    status, root = await _post(simulator.url, body)
    assert (status, _fault_code(root)) == (500, expected)


async def test_simulator_checks_citizen_id_check_digits(
    simulator: HukouSimulator, connector: SoapConnector
) -> None:
    await connector.send(_birth())
    good = simulator.received[-1].decode()
    bad = good.replace("431022199203150421", "431022199203150422")  # the mother's, broken
    status, root = await _post(simulator.url, bad.replace(f"{APP}.hukou", "other.hukou").encode())
    assert (status, _fault_code(root)) == (500, ("soap:Client", "INVALID_ID_NUMBER"))


async def test_wsdl_served_by_the_simulator_loads(simulator: HukouSimulator) -> None:
    config = SystemConfig(kind="soap", wsdl=f"{simulator.url}?wsdl", timeout_seconds=5)
    soap = SoapConnector("hukou", config)  # address from the served WSDL
    try:
        assert (await soap.send(_birth())).case_number
    finally:
        await soap.close()
