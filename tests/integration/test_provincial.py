"""The REST connector against the real provincial simulator, over real sockets.

    connector ──▶ Tap ──▶ ProvincialSimulator ──callback──▶ Sink ──▶ CallbackReceiver ──▶ report

The ``Tap`` forwards every request unchanged and checks it, and the answer, against
``contracts/provincial/openapi.yaml``; the ``Sink`` checks every callback the same way, with
the independent ``ContractCheck`` of the mapping tests, not the code that made the bodies.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.base import Decision
from connectors.rest import CallbackReceiver, RestConnector
from gateway.errors import Permanent, Retryable
from gateway.settings import SystemConfig
from gateway.signing import sign
from gateway.simulators.behaviour import Behaviour, Verdict
from gateway.simulators.ledger import EffectLedger
from gateway.simulators.provincial import ProvincialSimulator
from tests.support.waiting import eventually
from tests.unit.test_mapping_provincial import (
    CONTRACT,
    FIXTURES,
    PERSONAL,
    contract,
    fixture_request,
    load,
    provincial_steps,
    step_names,
)

SECRET = "provincial-secret-0123456789"
CALLBACK_PATH = "/v1/callbacks/provincial"
BASE_PATH = "/platform/v1"
NEWBORN, RETIREMENT, AFTER_DEATH = (
    fixture_request(n).application_id
    for n in ("newborn.medical_insurance", "retirement.pension", "after_death.cremation")
)


def config(url: str, secret: str = SECRET) -> SystemConfig:
    return SystemConfig(kind="rest", url=url, secret=secret, timeout_seconds=5)  # type: ignore[arg-type]


def template(path: str) -> str:
    return "/cases" if path.endswith("/cases") else "/cases/{case_no}"


@dataclass
class Tap:
    """Checks every request and answer against the contract and forwards it unchanged."""

    upstream: str
    violations: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        op = template(request.path)
        needed = ["X-Client-Id", "X-Timestamp", "X-Nonce", "X-Signature"]
        if request.method == "POST":
            needed.append("Idempotency-Key")
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            self.requests.append(payload)
            self.violations += [f"request: {e}" for e in contract().request(payload or {})]
        missing = [h for h in needed if h not in request.headers]
        self.violations += [f"request lacks {h}" for h in missing]
        headers = {k: v for k, v in request.headers.items() if k not in ("Host", "Content-Length")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.upstream + request.raw_path, data=body, headers=headers
            ) as resp,
        ):
            answer = await resp.read()
            status, content_type = resp.status, resp.content_type
        found = contract().response(op, request.method, status, json.loads(answer))
        self.violations += [f"{request.method} {op} {status}: {e}" for e in found]
        return web.Response(status=status, body=answer, content_type=content_type)


@dataclass
class Sink:
    """The gateway's callback route as the tests see it: checks each callback, may refuse a
    few with 503 (to see the platform retry), then hands it to the real receiver."""

    receiver: CallbackReceiver | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    refuse_next: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        self.events.append(event)
        self.violations += [f"callback: {e}" for e in contract().callback(event)]
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return web.Response(status=503)
        assert self.receiver is not None
        return await self.receiver.handle(request)


@dataclass
class Platform:
    simulator: ProvincialSimulator
    behaviour: Behaviour
    ledger: EffectLedger
    connector: RestConnector
    tap: Tap
    sink: Sink
    reports: list[Decision]
    url: str

    def contract_kept(self) -> list[str]:
        return self.tap.violations + self.sink.violations

    async def decision_for(self, task_id: str) -> Decision | None:
        async def found() -> Decision | None:
            return next((d for d in self.reports if d.task_id == task_id), None)

        return await eventually(found)  # type: ignore[no-any-return]


async def serve(routes: list[web.RouteDef]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def platform(tmp_path: Any) -> AsyncIterator[Platform]:
    behaviour = Behaviour(seed=7)
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    sink, reports = Sink(), []

    async def report(decision: Decision) -> None:
        reports.append(decision)

    sink_runner, sink_url = await serve([web.post(CALLBACK_PATH, sink.handle)])
    sink.receiver = CallbackReceiver(config("http://unused.invalid"), report)
    simulator = ProvincialSimulator(
        config(f"http://127.0.0.1:0{BASE_PATH}"), behaviour, ledger, None,
        callback_backoff_seconds=0.05,
    )  # fmt: skip
    await simulator.start()
    tap = Tap(simulator.url.removesuffix(BASE_PATH))
    tap_runner, tap_url = await serve([web.route("*", BASE_PATH + "/{tail:.*}", tap.handle)])
    connector = RestConnector(
        "provincial", config(tap_url + BASE_PATH), callback_url=sink_url + CALLBACK_PATH
    )
    yield Platform(simulator, behaviour, ledger, connector, tap, sink, reports, tap_url)
    await connector.close()
    await simulator.stop()
    await tap_runner.cleanup()
    await sink_runner.cleanup()
    ledger.close()


# --- connector ↔ simulator ----------------------------------------------------------------


async def test_every_operation_is_accepted_decided_called_back_and_polled(
    platform: Platform,
) -> None:
    steps = provincial_steps()
    receipts = {}
    for name in step_names():
        request = fixture_request(name)
        receipts[name] = (request, await platform.connector.send(request))
    assert {p["item_code"] for p in platform.tap.requests} == {
        s["operation"] for s in steps.values()
    }
    for name, (request, receipt) in receipts.items():
        assert receipt.case_number is not None and receipt.accepted_at is not None
        decision = await platform.decision_for(request.task_id)
        assert decision is not None, name
        assert decision.outcome == "completed" and decision.case_number == receipt.case_number
        assert sorted(decision.provides) == sorted(steps[name]["provides"])
        item = load(CONTRACT / "items" / f"{steps[name]['operation']}.schema.json")
        certificate = item.get("x-certificate")
        assert decision.certificate == (decision.provides[certificate] if certificate else None)
        polled = await platform.connector.check(request, receipt.case_number)
        assert polled == decision
    effects = await platform.ledger.effects()
    assert len(effects) == len(receipts)
    assert await platform.ledger.double_effects() == []
    assert len(platform.reports) == len(receipts)
    assert platform.contract_kept() == []


async def test_resending_a_task_gives_the_same_case_and_no_second_effect(
    platform: Platform,
) -> None:
    platform.behaviour.decision_delay_seconds = 0.3
    request = fixture_request("retirement.file_review")
    first = await platform.connector.send(request)
    again = await platform.connector.send(request)  # before the decision
    assert again.case_number == first.case_number
    assert await platform.decision_for(request.task_id) is not None
    after = await platform.connector.send(request)  # after the decision
    assert after.case_number == first.case_number
    assert await platform.ledger.delivery_count("provincial") == 3
    effects = await platform.ledger.effects(RETIREMENT)
    assert [(e.task, e.idempotency_key) for e in effects] == [("file_review", request.task_id)]
    assert platform.contract_kept() == []


async def test_the_same_task_id_with_another_body_is_permanent(platform: Platform) -> None:
    request = fixture_request("retirement.file_review")
    await platform.connector.send(request)
    subjects = {**request.fields["subjects"], "service_years": 30}
    with pytest.raises(Permanent) as caught:
        await platform.connector.send(
            replace(request, fields={**request.fields, "subjects": subjects})
        )
    assert caught.value.code == "http_409" and "another body" in caught.value.detail
    assert platform.contract_kept() == []


async def test_a_request_the_contract_refuses_is_permanent_and_the_tap_agrees(
    platform: Platform,
) -> None:
    request = fixture_request("retirement.file_review")
    subjects = {**request.fields["subjects"], "service_years": 99}
    with pytest.raises(Permanent) as caught:
        await platform.connector.send(
            replace(request, fields={**request.fields, "subjects": subjects})
        )
    assert caught.value.code == "invalid_request"
    assert "data.service_years" in caught.value.detail
    assert not any(value in caught.value.detail for value in PERSONAL)
    assert [v for v in platform.tap.violations if "service_years" in v]  # the contract says so too
    assert await platform.ledger.effects() == []


async def test_a_wrong_check_character_is_refused_like_the_real_platform(
    platform: Platform,
) -> None:
    """The schema can only say 18 characters; the platform checks GB 11643 as well."""
    request = fixture_request("newborn.medical_insurance")
    provided = {"citizen_id": "431022202611200016"}  # the valid one ends in 5
    with pytest.raises(Permanent) as caught:
        await platform.connector.send(
            replace(request, fields={**request.fields, "provided": provided})
        )
    assert caught.value.code == "invalid_request" and "subject.id_number" in caught.value.detail
    assert "431022202611200016" not in caught.value.detail


async def test_transient_failures_are_retryable(platform: Platform) -> None:
    request = fixture_request("after_death.cremation")
    platform.behaviour.failure_rate = 1.0
    with pytest.raises(Retryable) as caught:
        await platform.connector.send(request)
    assert caught.value.code == "http_503"
    platform.behaviour.failure_rate = 0.0
    receipt = await platform.connector.send(request)
    platform.behaviour.failure_rate = 1.0
    with pytest.raises(Retryable):
        await platform.connector.check(request, receipt.case_number)
    assert platform.contract_kept() == []


async def test_an_outage_window_is_retryable_until_it_ends(platform: Platform) -> None:
    request = fixture_request("after_death.medical_insurance_stop")
    now = time.time()
    platform.behaviour.outages = [(now - 1, now + 3600)]
    for _ in range(3):
        with pytest.raises(Retryable):
            await platform.connector.send(request)
    platform.behaviour.outages = [(now - 3600, now - 1)]
    await platform.connector.send(request)
    assert await platform.decision_for(request.task_id) is not None
    assert len(await platform.ledger.effects(AFTER_DEATH)) == 1
    assert platform.contract_kept() == []


async def test_an_unreachable_platform_is_retryable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    connector = RestConnector("provincial", config(f"http://127.0.0.1:{port}{BASE_PATH}"))
    try:
        with pytest.raises(Retryable) as caught:
            await connector.send(fixture_request("retirement.pension"))
        assert caught.value.code == "unreachable"
    finally:
        await connector.close()


async def test_a_wrong_secret_and_an_unknown_case_are_permanent(platform: Platform) -> None:
    request = fixture_request("retirement.pension")
    stranger = RestConnector(
        "provincial", config(platform.url + BASE_PATH, "another-secret-0123456789")
    )
    try:
        with pytest.raises(Permanent) as caught:
            await stranger.send(request)
        assert caught.value.code == "http_401"
    finally:
        await stranger.close()
    with pytest.raises(Permanent) as caught:
        await platform.connector.check(request, "HN-20260101-0000000000")
    assert caught.value.code == "http_404"
    with pytest.raises(Permanent) as caught:
        await platform.connector.check(request, "../admin")
    assert caught.value.code == "no_case"
    assert platform.contract_kept() == []


async def test_denied_correction_and_suspended_verdicts_map_to_decisions(
    platform: Platform,
) -> None:
    b = platform.behaviour
    b.by_application[RETIREMENT] = Verdict("denied", reason="缴费年限不足十五年")
    b.by_application[AFTER_DEATH] = Verdict("suspended", reason="需核查遗产情况")
    b.by_name["王子轩"] = Verdict(
        "correction_requested",
        gaps=[("data.guardian.id_number", "监护人证件号码有误"), ("subject.name", "姓名含生僻字")],
    )
    names = ("retirement.pension", "after_death.property_inheritance", "newborn.medical_insurance")
    sent = {}
    for name in names:
        request = fixture_request(name)
        sent[name] = (request, await platform.connector.send(request))
    expected = {
        "retirement.pension": ("denied", "缴费年限不足十五年", ()),
        "after_death.property_inheritance": ("suspended", "需核查遗产情况", ()),
        "newborn.medical_insurance": (
            "correction_requested",
            None,
            (
                ("subjects.mother.id_number", "监护人证件号码有误"),
                ("subjects.child.name", "姓名含生僻字"),
            ),
        ),
    }
    for name, (request, receipt) in sent.items():
        called_back = await platform.decision_for(request.task_id)
        assert called_back is not None
        outcome, reason, gaps = expected[name]
        assert (called_back.outcome, called_back.reason) == (outcome, reason)
        assert tuple((g.field, g.message) for g in called_back.gaps) == gaps
        assert await platform.connector.check(request, receipt.case_number) == called_back
    assert await platform.ledger.effects() == []  # nothing was issued
    assert platform.contract_kept() == []


async def test_a_case_not_yet_decided_polls_as_in_progress(platform: Platform) -> None:
    platform.behaviour.decision_delay_seconds = 60
    request = fixture_request("retirement.retiree_medical")
    receipt = await platform.connector.send(request)
    decision = await platform.connector.check(request, receipt.case_number)
    assert decision is not None and decision.outcome == "in_progress"
    assert decision.case_number == receipt.case_number
    assert platform.reports == []
    assert platform.contract_kept() == []


async def test_a_refused_callback_is_retried_until_recorded(platform: Platform) -> None:
    platform.sink.refuse_next = 2
    request = fixture_request("retirement.payment_account")
    await platform.connector.send(request)
    assert await platform.decision_for(request.task_id) is not None
    assert len(platform.sink.events) == 3
    assert len({e["event_id"] for e in platform.sink.events}) == 1  # the same event each time
    assert len(platform.reports) == 1
    assert platform.contract_kept() == []


async def test_the_simulator_refuses_what_the_contract_refuses(platform: Platform) -> None:
    """Raw requests, signed by hand: each refusal has the status and problem the contract
    documents (the tap checks every answer)."""
    good = json.dumps(load(FIXTURES / "expected" / "retirement.pension.json")).encode()
    key = fixture_request("retirement.pension").task_id
    path = BASE_PATH + "/cases"

    async def post(body: bytes, key: str | None, nonce: str | None = None, **headers: str) -> int:
        stamp, nonce = str(int(time.time())), nonce or os.urandom(8).hex()
        sent = {
            "X-Client-Id": "gateway",
            "X-Timestamp": stamp,
            "X-Nonce": nonce,
            "X-Signature": sign(SECRET, stamp, nonce, "POST", path, key or "", body),
            "Content-Type": "application/json",
            **({"Idempotency-Key": key} if key is not None else {}),
            **headers,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(platform.url + path, data=body, headers=sent) as resp,
        ):
            return resp.status

    other = load(FIXTURES / "expected" / "retirement.pension.json")
    assert await post(good, None) == 400
    assert await post(good, key, **{"Content-Type": "text/plain"}) == 415
    assert await post(b"{not json", key) == 400
    assert await post(json.dumps({**other, "item_code": "no_such_item"}).encode(), key) == 422
    assert await post(good, key + ".r1") == 422  # request_id differs from the key
    assert await post(good, key, nonce="only-once") == 201
    assert await post(good, key, nonce="only-once") == 401  # a replayed nonce
    assert await post(good, key) == 200
    assert [v for v in platform.tap.violations if not v.startswith("request")] == []


# --- the callback receiver on its own -----------------------------------------------------


def signed(body: bytes, *, secret: str = SECRET, nonce: str | None = None,
           now: float | None = None, client: str = "provincial") -> dict[str, str]:  # fmt: skip
    stamp, nonce = str(int(time.time() if now is None else now)), nonce or os.urandom(8).hex()
    key = "HN-20261127-00A1B2C3D4-E1"
    return {
        "X-Client-Id": client,
        "X-Timestamp": stamp,
        "X-Nonce": nonce,
        "Idempotency-Key": key,
        "X-Signature": sign(secret, stamp, nonce, "POST", CALLBACK_PATH, key, body),
        "Content-Type": "application/json",
    }


def event(case_name: str = "completed-cremation", **change: Any) -> bytes:
    case = {**load(FIXTURES / "cases" / f"{case_name}.json"), **change}
    body = {
        "event_id": f"{case['case_no']}-E1",
        "event_type": "case.status_changed",
        "occurred_at": "2026-11-27T09:41:18+08:00",
        "case": case,
    }
    return json.dumps(body, ensure_ascii=False).encode()


@dataclass
class Receiver:
    url: str
    session: aiohttp.ClientSession
    reports: list[Decision]
    fail_with: Exception | None = None

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        async with self.session.post(self.url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    reports: list[Decision] = []
    holder: list[Receiver] = []

    async def report(decision: Decision) -> None:
        if holder[0].fail_with is not None:
            raise holder[0].fail_with
        reports.append(decision)

    app = web.Application()
    app.router.add_post(
        CALLBACK_PATH, CallbackReceiver(config("http://unused.invalid"), report).handle
    )
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        holder.append(Receiver(str(server.make_url(CALLBACK_PATH)), session, reports))
        yield holder[0]


async def test_a_signed_callback_is_reported_once(receiver: Receiver) -> None:
    body = event()
    assert contract().callback(json.loads(body)) == []
    assert await receiver.post(body, signed(body)) == 204
    [decision] = receiver.reports
    assert decision.outcome == "completed" and decision.certificate == "HH20261127000042"
    assert decision.task_id == load(FIXTURES / "cases" / "completed-cremation.json")["request_id"]


async def test_a_bad_signature_is_401(receiver: Receiver) -> None:
    body = event()
    assert await receiver.post(body, signed(body, secret="another-secret-0123456789")) == 401
    assert await receiver.post(body, signed(b"other bytes")) == 401
    assert await receiver.post(body, signed(body, client="gateway")) == 401
    headers = signed(body)
    del headers["X-Signature"]
    assert await receiver.post(body, headers) == 401
    assert receiver.reports == []


async def test_a_replayed_nonce_is_401(receiver: Receiver) -> None:
    body = event()
    headers = signed(body, nonce="once-only")
    assert await receiver.post(body, headers) == 204
    assert await receiver.post(body, headers) == 401
    assert await receiver.post(body, signed(body, nonce="once-only")) == 401
    assert len(receiver.reports) == 1


async def test_a_stale_timestamp_is_401(receiver: Receiver) -> None:
    body = event()
    assert await receiver.post(body, signed(body, now=time.time() - 301)) == 401
    assert await receiver.post(body, signed(body, now=time.time() + 301)) == 401
    assert receiver.reports == []


async def test_an_invalid_body_is_422(receiver: Receiver) -> None:
    broken = [
        event(result=None),  # COMPLETED without a result
        event("correction-medical-insurance", gaps=[]),  # a correction with no gaps
        b"not json",
        json.dumps({"event_id": "X-E1"}).encode(),
    ]
    for body in broken:
        if body != b"not json":
            assert contract().callback(json.loads(body)), "the contract refuses it too"
        assert await receiver.post(body, signed(body)) == 422
    assert receiver.reports == []


async def test_an_accepted_event_is_acknowledged_without_a_report(receiver: Receiver) -> None:
    body = event("accepted")
    assert contract().callback(json.loads(body)) == []
    assert await receiver.post(body, signed(body)) == 204
    assert receiver.reports == []


async def test_a_report_that_cannot_be_recorded_now_is_503(receiver: Receiver) -> None:
    receiver.fail_with = Retryable("store down", system="provincial")
    body = event()
    assert await receiver.post(body, signed(body)) == 503
    receiver.fail_with = None
    assert await receiver.post(body, signed(body)) == 204  # the platform's retry, re-signed
    assert len(receiver.reports) == 1
