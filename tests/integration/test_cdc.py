"""The CDC queue department end to end on the real RabbitMQ: QueueConnector publishes to
``dept.cdc.inbox``, the CDC simulator answers on ``dept.cdc.replies``, QueueResultSource
reports the decisions. The contract is checked with ``jsonschema`` on what really crossed
the broker; the effect ledger, not the gateway, says what happened how many times."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in dev deps

from connectors.amqp import QueueConnector, QueueResultSource
from connectors.base import Decision, DepartmentRequest, Gap, Receipt
from gateway.broker.client import BrokerClient
from gateway.broker.messages import uuid7
from gateway.broker.topology import DEAD_LETTERS, build_topology
from gateway.catalogue.fields import select
from gateway.errors import Permanent, Retryable
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, Verdict
from gateway.simulators.cdc import CdcSimulator
from gateway.simulators.ledger import EffectLedger
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Got, Rabbit, with_port
from tests.support.waiting import eventually, true

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
INBOX, REPLIES = "dept.cdc.inbox", "dept.cdc.replies"
CONFIG = SystemConfig(kind="amqp", inbox_queue=INBOX, reply_queue=REPLIES, timeout_seconds=5.0)
RECORD_NO = re.compile(r"^JZ431022[0-9]{10}$")
CASE_NO = re.compile(r"^CDC[0-9]{8}-[0-9]{6}$")


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((ROOT / "contracts" / "cdc" / f"{name}.schema.json").read_text("utf-8"))
    return Draft202012Validator(schema)


REQUEST_SCHEMA, REPLY_SCHEMA = _validator("request"), _validator("reply")


def _step() -> dict[str, Any]:
    text = (ROOT / "gateway" / "catalogue" / "data" / "catalogue-2026.1.toml").read_text("utf-8")
    steps = tomllib.loads(text)["matters"]["newborn"]["steps"]
    step: dict[str, Any] = next(s for s in steps if s["system"] == "cdc")
    return step


def task_for(
    application_id: str | None = None, edit: Callable[[dict[str, Any]], None] | None = None
) -> DepartmentRequest:
    """The CDC task of a newborn application, cut from the example envelope as the gateway
    cuts it (the catalogue step's needs)."""
    app = application_id or uuid7()
    example = ROOT / "contracts" / "envelope" / "examples" / "valid" / "newborn-yizhang-window.json"
    envelope = json.loads(example.read_text("utf-8"))
    if edit is not None:
        edit(envelope)
    step = _step()
    fields = select(envelope, step["needs"], {"birth_certificate_no": "Q430012345"})
    return DepartmentRequest(
        f"{app}.{step['key']}", app, "newborn", step["key"], "cdc", step["operation"], 1, fields
    )


@pytest.fixture
async def broker(rabbit: Rabbit) -> AsyncIterator[BrokerClient]:
    """The gateway's connection; it declares the topology, dept.cdc.* queues included."""
    client = BrokerClient(rabbit.url, build_topology(), reconnect_max_seconds=0.5)
    await client.start()
    yield client
    await client.close(drain_seconds=1)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[EffectLedger]:
    led = EffectLedger(tmp_path / "ledger.sqlite3")
    yield led
    led.close()


@dataclass
class World:
    connector: QueueConnector
    simulator: CdcSimulator
    behaviour: Behaviour
    ledger: EffectLedger
    reported: list[Decision] = field(default_factory=list)
    report_calls: int = 0
    fail_reports: int = 0  # how many report calls raise before they succeed

    async def report(self, decision: Decision) -> None:
        self.report_calls += 1
        if self.fail_reports > 0:
            self.fail_reports -= 1
            raise RuntimeError("the store is down (test)")
        self.reported.append(decision)

    def of(self, task_id: str) -> list[Decision]:
        return [d for d in self.reported if d.task_id == task_id]

    async def final(self, task_id: str) -> Decision:
        finals = await eventually(
            lambda: true([d for d in self.of(task_id) if d.outcome != "in_progress"] != [])
        )
        assert finals, f"no final decision for {task_id}: {self.of(task_id)}"
        return next(d for d in self.of(task_id) if d.outcome != "in_progress")

    def check_replies(self) -> None:
        assert self.simulator.replies
        for reply in self.simulator.replies:
            assert list(REPLY_SCHEMA.iter_errors(reply)) == [], reply

    def check_requests(self) -> None:
        assert self.simulator.requests
        for body in self.simulator.requests:
            assert list(REQUEST_SCHEMA.iter_errors(body)) == []


@pytest.fixture
async def world(rabbit: Rabbit, broker: BrokerClient, ledger: EffectLedger) -> AsyncIterator[World]:
    behaviour = Behaviour()
    simulator = CdcSimulator(rabbit.url, CONFIG, behaviour, ledger, requeue_pause_seconds=0.25)
    w = World(QueueConnector("cdc", CONFIG, broker), simulator, behaviour, ledger)
    source = QueueResultSource("cdc", CONFIG, broker, prefetch=8)
    running = asyncio.create_task(source.run(w.report))
    await simulator.start()
    yield w
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await simulator.stop()


async def dead_letters(rabbit: Rabbit, at_least: int = 1) -> list[Got]:
    return await rabbit.aget_all(DEAD_LETTERS, wait=10, at_least=at_least)


def death(got: Got) -> dict[str, Any]:
    first: dict[str, Any] = got.properties.headers["x-death"][0]
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in first.items()}


# -- the request as it crosses the broker ---------------------------------------------------
async def test_the_published_request_meets_the_contract(
    rabbit: Rabbit, broker: BrokerClient
) -> None:
    connector = QueueConnector("cdc", CONFIG, broker)
    request = task_for()
    assert await connector.send(request) == Receipt()  # the receipt comes as a reply
    assert await connector.send(request) == Receipt()
    got = await rabbit.aget_all(INBOX, wait=5, at_least=2)
    assert len(got) == 2
    for message in got:
        assert list(REQUEST_SCHEMA.iter_errors(message.json())) == []
        assert message.json()["request_id"] == request.task_id
        props = message.properties
        assert props.correlation_id == request.task_id
        assert props.headers["x-task-id"] == request.task_id
        assert props.headers["x-attempt"] == 1
        assert props.content_type == "application/json" and props.delivery_mode == 2
        assert props.type == "vaccination_record.request"
    assert got[0].properties.message_id != got[1].properties.message_id  # unique per publish
    assert connector.polls is False
    assert await connector.check(request, None) is None


# -- happy path and idempotency -------------------------------------------------------------
async def test_send_then_received_and_completed_with_the_record_no(world: World) -> None:
    request = task_for()
    assert await world.connector.send(request) == Receipt()
    final = await world.final(request.task_id)
    received = world.of(request.task_id)[0]
    assert received.outcome == "in_progress" and CASE_NO.match(received.case_number or "")
    assert final.outcome == "completed"
    assert final.case_number == received.case_number
    assert RECORD_NO.match(final.provides["vaccination_record_no"])
    assert final.certificate == final.provides["vaccination_record_no"]
    assert [d.outcome for d in world.of(request.task_id)] == ["in_progress", "completed"]
    (effect,) = await world.ledger.effects(request.application_id)
    assert (effect.system, effect.task, effect.idempotency_key) == (
        "cdc",
        "vaccination",
        request.task_id,
    )
    world.check_requests()
    world.check_replies()


async def test_resending_the_same_task_id_applies_the_effect_once(world: World) -> None:
    request = task_for()
    await world.connector.send(request)
    first = await world.final(request.task_id)
    await world.connector.send(request)
    assert await eventually(lambda: true(len(world.of(request.task_id)) == 4))
    decisions = world.of(request.task_id)
    assert [d.outcome for d in decisions] == ["in_progress", "completed"] * 2
    assert decisions[2:] == decisions[:2]  # the same replies, case and record number
    assert decisions[3].provides == first.provides
    assert len(await world.ledger.effects(request.application_id)) == 1
    assert await world.ledger.double_effects() == []
    assert await world.ledger.delivery_count("cdc") == 2
    world.check_replies()


async def test_a_resend_while_deciding_still_opens_one_record(world: World) -> None:
    world.behaviour.decision_delay_seconds = 0.5
    request = task_for()
    await asyncio.gather(world.connector.send(request), world.connector.send(request))
    assert (await world.final(request.task_id)).outcome == "completed"
    # both requests answered "received" (and perhaps "completed" twice): one case, one record
    assert await eventually(lambda: true(len(world.of(request.task_id)) >= 3))
    assert len(world.simulator.requests) == 2
    assert len({d.case_number for d in world.of(request.task_id)}) == 1
    assert len(await world.ledger.effects(request.application_id)) == 1
    assert await world.ledger.delivery_count("cdc") == 2


# -- verdicts -------------------------------------------------------------------------------
async def test_denied(world: World) -> None:
    request = task_for()
    world.behaviour.by_application[request.application_id] = Verdict(
        "denied", reason="the family lives outside this county"
    )
    await world.connector.send(request)
    final = await world.final(request.task_id)
    assert final.outcome == "denied"
    assert final.reason == "not_eligible: the family lives outside this county"
    assert await world.ledger.effects(request.application_id) == []
    world.check_replies()


async def test_correction_lists_every_gap_and_a_corrected_request_completes(
    world: World,
) -> None:
    request = task_for()
    world.behaviour.by_name["王子轩"] = Verdict(
        "correction_requested",
        gaps=[("child.name", "differs from the birth certificate"),
              ("guardian.phone", "nobody answers this number")],
    )  # fmt: skip
    await world.connector.send(request)
    final = await world.final(request.task_id)
    assert final.outcome == "correction_requested"
    assert list(final.gaps) == [
        Gap("subjects.child.name", "differs from the birth certificate"),
        Gap("applicant.phone", "nobody answers this number"),
    ]
    assert await world.ledger.effects(request.application_id) == []

    corrected = task_for(
        request.application_id, lambda e: e["subjects"]["child"].update(name="王梓轩")
    )
    world.reported.clear()
    await world.connector.send(corrected)
    again = await world.final(request.task_id)
    assert again.outcome == "completed" and again.case_number == final.case_number
    assert len(await world.ledger.effects(request.application_id)) == 1
    world.check_replies()


async def test_suspended(world: World) -> None:
    request = task_for()
    world.behaviour.by_application[request.application_id] = Verdict(
        "suspended", reason="awaiting a paediatric assessment before BCG"
    )
    await world.connector.send(request)
    final = await world.final(request.task_id)
    assert final.outcome == "suspended"
    assert final.reason == "awaiting a paediatric assessment before BCG"
    assert CASE_NO.match(final.case_number or "")
    assert await world.ledger.effects(request.application_id) == []
    world.check_replies()


# -- replies the gateway must not report ----------------------------------------------------
INVALID_REPLIES = sorted((ROOT / "tests" / "fixtures" / "cdc" / "replies" / "invalid").glob("*"))
VALID_COMPLETED = ROOT / "tests" / "fixtures" / "cdc" / "replies" / "valid" / "completed.json"


async def test_invalid_replies_are_not_reported_but_dead_lettered(
    world: World, rabbit: Rabbit
) -> None:
    """Every reply fixture that breaks reply.schema.json (several of which the mapping alone
    would read), a reply correlated to another task, and bytes that are not JSON."""
    sent: list[bytes] = []
    for path in INVALID_REPLIES:
        body = path.read_bytes()
        task_id = json.loads(body)["request_id"]
        await rabbit.apublish("", REPLIES, body, correlation_id=task_id)
        sent.append(body)
    mismatched = VALID_COMPLETED.read_bytes()
    await rabbit.apublish("", REPLIES, mismatched, correlation_id=f"{uuid7()}.vaccination")
    await rabbit.apublish("", REPLIES, b"\xff not json", message_id="garbage-1")
    sent += [mismatched, b"\xff not json"]
    parked = await dead_letters(rabbit, at_least=len(sent))
    assert sorted(p.body for p in parked) == sorted(sent)
    for p in parked:
        assert death(p)["reason"] == "rejected" and death(p)["queue"] == REPLIES
    assert world.reported == []
    request = task_for()  # the consumer goes on
    await world.connector.send(request)
    assert (await world.final(request.task_id)).outcome == "completed"


async def test_a_report_that_raises_gets_the_reply_again(world: World, rabbit: Rabbit) -> None:
    world.fail_reports = 1
    request = task_for()
    await world.connector.send(request)
    await world.final(request.task_id)
    assert await eventually(lambda: true(len(world.of(request.task_id)) == 2))
    assert sorted(d.outcome for d in world.of(request.task_id)) == ["completed", "in_progress"]
    assert world.report_calls == 3  # one raised, and its reply came back
    assert await rabbit.aget_all(DEAD_LETTERS) == []


# -- requests the CDC refuses ---------------------------------------------------------------
async def test_a_task_that_cannot_be_mapped_is_permanent_and_nothing_is_sent(
    world: World,
) -> None:
    broken = task_for(edit=lambda e: e["applicant"].pop("phone"))
    with pytest.raises(Permanent, match=r"applicant\.phone"):
        await world.connector.send(broken)
    request = task_for()
    await world.connector.send(request)
    await world.final(request.task_id)
    assert await world.ledger.delivery_count("cdc") == 1  # only the good one arrived


async def test_a_request_breaking_the_contract_is_refused_and_parked_not_reported(
    world: World, rabbit: Rabbit
) -> None:
    body = json.loads((ROOT / "tests" / "fixtures" / "cdc" / "request-window.json").read_text())
    app = uuid7()
    task_id = f"{app}.vaccination"
    body.update(request_id=task_id, application_id=app)
    body["child"]["birth_certificate_no"] = "12345"
    await rabbit.apublish("", INBOX, json.dumps(body).encode(), correlation_id=task_id,
                          headers={"x-task-id": task_id})  # fmt: skip
    (parked,) = await dead_letters(rabbit)
    reply = parked.json()
    assert reply["status"] == "refused" and reply["error_code"] == "invalid_request"
    assert reply["problems"] == [{"path": "child.birth_certificate_no", "rule": "pattern"}]
    assert death(parked)["queue"] == REPLIES
    assert world.reported == []
    assert await world.ledger.delivery_count("cdc") == 1
    assert await world.ledger.effects(app) == []
    world.check_replies()


async def test_a_request_without_any_id_is_dead_lettered_by_the_cdc(
    world: World, rabbit: Rabbit
) -> None:
    await rabbit.apublish("", INBOX, b"hello", message_id="no-id")
    (parked,) = await dead_letters(rabbit)
    assert parked.body == b"hello" and death(parked)["queue"] == INBOX
    assert world.simulator.replies == []


# -- failures -------------------------------------------------------------------------------
async def test_a_cdc_failing_transiently_gets_the_request_again(world: World) -> None:
    world.behaviour.failure_rate = 1.0
    request = task_for()
    await world.connector.send(request)
    assert await eventually(lambda: world_deliveries(world, 2))
    assert world.reported == []
    world.behaviour.failure_rate = 0.0
    assert (await world.final(request.task_id)).outcome == "completed"
    assert len(await world.ledger.effects(request.application_id)) == 1


async def world_deliveries(world: World, at_least: int) -> bool:
    return await world.ledger.delivery_count("cdc") >= at_least


async def test_an_outage_holds_the_request_until_it_ends(world: World, rabbit: Rabbit) -> None:
    world.behaviour.outages = [(0.0, math.inf)]
    request = task_for()
    await world.connector.send(request)
    assert await eventually(lambda: world_deliveries(world, 1))
    # held, not bounced: no second delivery eats into the queue's delivery limit
    assert not await eventually(lambda: world_deliveries(world, 2), within=1.0)
    assert world.reported == [] and world.simulator.replies == []
    world.behaviour.outages = []
    assert (await world.final(request.task_id)).outcome == "completed"
    assert await world.ledger.delivery_count("cdc") == 2  # one attempt lost to the outage
    assert await rabbit.aget_all(DEAD_LETTERS) == []


async def test_a_broker_that_is_down_makes_send_retryable(
    rabbit: Rabbit, broker: BrokerClient, proxy: TcpProxy
) -> None:
    client = BrokerClient(
        with_port(rabbit.url, proxy.port), build_topology(), reconnect_max_seconds=0.5
    )
    await client.start()
    try:
        fast = CONFIG.model_copy(update={"timeout_seconds": 1.0})
        connector = QueueConnector("cdc", fast, client)
        await proxy.refuse()
        assert await eventually(lambda: true(not client.connected))
        with pytest.raises(Retryable):
            await connector.send(task_for())
        await proxy.restore()
        assert await eventually(lambda: true(client.connected))
        await connector.send(task_for())
        assert len(await rabbit.aget_all(INBOX, wait=5, at_least=1)) == 1
    finally:
        await client.close(drain_seconds=1)
