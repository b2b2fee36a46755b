"""What the department simulators answer meets the department's contract, checked here with
lxml against the contract's XSD (never with the simulator's own check):

- hukou: every SOAP answer (the receipt of every submission the gateway makes for the example
  envelopes, and the case status for each verdict the police may give) validates against
  contracts/hukou/hukou.xsd;
- hospital: every acknowledgement and result file the simulator drops, for every verdict,
  validates against contracts/hospital/ack.xsd or result.xsd.

The provincial platform's answers and callbacks are checked the same way in
tests/integration/test_provincial.py (a tap in front of the simulator), and the CDC's replies
in tests/integration/test_cdc.py.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree
from zeep import Client, Settings

from connectors.base import DepartmentRequest
from connectors.filedrop import FileDropConnector
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, Verdict
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.hukou import HukouSimulator
from gateway.simulators.ledger import EffectLedger
from mappings import hukou
from tests.contract.department_output import ROOT, tasks
from tests.support.waiting import eventually

CONTRACTS = ROOT / "contracts"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
HUKOU_NS = "urn:cn:gov:police:hukou:2026"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
VERDICTS = {
    "completed": Verdict("completed"),
    "denied": Verdict("denied", reason="不符合受理条件"),
    "suspended": Verdict("suspended", reason="需进一步核实"),
}


def xsd(path: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CONTRACTS / path), PARSER))


def _with_app(request: DepartmentRequest, n: int) -> DepartmentRequest:
    app = f"0190a0b0-0000-7000-8000-{n:012d}"
    return dataclasses.replace(request, application_id=app, task_id=f"{app}.{request.task}")


def system_tasks(system: str, verdicts: dict[str, Verdict]) -> Iterator[tuple[Verdict, Any]]:
    n = 0
    for task in tasks():
        if task.request.system != system:
            continue
        for verdict in verdicts.values():
            n += 1
            yield verdict, _with_app(task.request, n)


@pytest.fixture
def ledger() -> Iterator[EffectLedger]:
    book = EffectLedger()
    yield book
    book.close()


# --- hukou ---------------------------------------------------------------------------------
@pytest.fixture
async def police(ledger: EffectLedger) -> AsyncIterator[tuple[HukouSimulator, Behaviour]]:
    behaviour = Behaviour(seed=3)
    sim = HukouSimulator(
        SystemConfig(kind="soap", url="http://127.0.0.1:0/hukou"), behaviour, ledger
    )
    await sim.start()
    yield sim, behaviour
    await sim.stop()


async def _soap(session: aiohttp.ClientSession, url: str, client: Any, call: Any) -> Any:
    service = client.create_service(f"{{{HUKOU_NS}}}HukouBinding", url)
    message = client.create_message(service, call.operation, **call.body)
    data = etree.tostring(message, xml_declaration=True, encoding="utf-8")
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": call.operation}
    async with session.post(url, data=data, headers=headers) as resp:
        body = await resp.read()
    assert resp.status == 200, body.decode()[:500]
    (answer,) = etree.fromstring(body, PARSER).find(f"{{{SOAP}}}Body")
    return answer


async def test_every_hukou_answer_meets_the_xsd(
    police: tuple[HukouSimulator, Behaviour],
) -> None:
    sim, behaviour = police
    client = Client(str(CONTRACTS / "hukou" / "hukou.wsdl"), settings=Settings(strict=True))
    schema = xsd("hukou/hukou.xsd")
    verdicts = {
        **VERDICTS,
        "correction_requested": Verdict(
            "correction_requested", "姓名有误", gaps=[("Child/Name", "姓名与出生医学证明不一致")]
        ),
    }
    answers: list[tuple[str, Any]] = []
    statuses: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for verdict, request in system_tasks("hukou", verdicts):
            behaviour.by_application[request.application_id] = verdict
            receipt = await _soap(session, sim.url, client, hukou.submission(request))
            answers.append((request.task_id, receipt))
            case_no = receipt.findtext(f"{{{HUKOU_NS}}}CaseNo")

            async def decided(request: DepartmentRequest = request, case: Any = case_no) -> Any:
                query = hukou.status_query(request, case)
                status = await _soap(session, sim.url, client, query)
                state = status.findtext(f"{{{HUKOU_NS}}}Status")
                return (status, state) if state not in ("RECEIVED", "IN_PROGRESS") else None

            found = await eventually(decided)
            assert found, f"{request.task_id}: no decision"
            answers.append((request.task_id, found[0]))
            statuses.add(found[1])
    problems = [
        f"{task}: {etree.QName(a).localname}: {schema.error_log}"
        for task, a in answers
        if not schema.validate(copy.deepcopy(a))
    ]
    assert problems == []
    assert len(statuses) == len(verdicts), statuses  # every kind of answer was seen


# --- hospital ------------------------------------------------------------------------------
async def test_every_hospital_file_meets_its_xsd(tmp_path: Path, ledger: EffectLedger) -> None:
    base = tmp_path / "hospital"
    for name in ("outbox", "inbox", "archive", "error"):
        (base / name).mkdir(parents=True)
    config = SystemConfig(
        kind="filedrop", outbox=base / "outbox", inbox=base / "inbox",
        archive=base / "archive", error=base / "error",
    )  # fmt: skip
    behaviour = Behaviour(seed=5)
    verdicts = {
        **VERDICTS,
        "correction_requested": Verdict(
            "correction_requested", gaps=[("Child/WeightGrams", "体重不符")]
        ),
    }
    sent = []
    sim = HospitalSimulator(config, behaviour, ledger, scan_seconds=0.02)
    await sim.start()
    try:
        connector = FileDropConnector("hospital", config)
        for verdict, request in system_tasks("hospital", verdicts):
            behaviour.by_application[request.application_id] = verdict
            await connector.send(request)
            sent.append(request.task_id)

        async def answered() -> Any:
            roots = {
                p: etree.parse(str(p), PARSER).getroot() for p in (base / "inbox").glob("*.xml")
            }
            kinds = {(etree.QName(r).localname, r.findtext("{*}TaskId")) for r in roots.values()}
            done = all(
                ("Acknowledgement", t) in kinds and ("CertificateResult", t) in kinds for t in sent
            )
            return roots if done else None

        files = await eventually(answered)
    finally:
        await sim.stop()
    assert files, "the hospital did not answer every request"
    schemas = {
        "Acknowledgement": xsd("hospital/ack.xsd"),
        "CertificateResult": xsd("hospital/result.xsd"),
    }
    problems = []
    statuses = set()
    for path, root in files.items():
        schema = schemas[etree.QName(root).localname]
        if not schema.validate(root):
            problems.append(f"{path.name}: {schema.error_log}")
        statuses.add(root.findtext("{*}Status"))
    assert problems == []
    assert len(statuses - {None}) == len(verdicts), statuses
