"""Retries through broker delay queues and maintenance windows, against real RabbitMQ, the
real store and the police simulator over real sockets.

The police system is made to fail by the simulator's own outage switch; what the department
saw is read from the simulator (its raw requests, its effect ledger), what the broker held
from ``rabbitmqctl``. The retry policy is scaled down (sub-second pauses, a test ladder of
0.2 s and 0.5 s delay queues) so the tests stay quick; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from lxml import etree

from connectors.rest import RestConnector
from connectors.soap import SoapConnector
from gateway.broker.topology import retry_name
from gateway.errors import Permanent, Retryable
from gateway.orchestration.messages import task_message
from gateway.runtime import Gateway
from gateway.settings import RetryPolicy, Settings, SystemConfig
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.hukou import HukouSimulator
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET
from tests.integration.test_hukou import _birth
from tests.support.portal import Portal, example_json
from tests.support.rabbit import Rabbit, rabbitmqctl
from tests.support.waiting import eventually
from tests.unit.test_mapping_provincial import fixture_request

pytestmark = pytest.mark.broker
LADDER = (0.2, 0.5)
SOAP_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
DOWN_FOR_NOW = [(0.0, 1e12)]


def policy(**kw: Any) -> RetryPolicy:
    base: dict[str, Any] = {
        "attempts": 100,
        "quick_attempts": 2,
        "initial_seconds": 0.05,
        "max_seconds": 0.4,
        "ladder": LADDER,
    }
    return RetryPolicy(**{**base, **kw})


def submissions(simulator: HukouSimulator) -> list[str]:
    """The RequestId of every submission the police received (status queries left out)."""
    found = []
    for raw in list(simulator.received):
        (element,) = etree.fromstring(raw).find(SOAP_BODY)
        if etree.QName(element).localname.startswith("Submit"):
            found.append(element.findtext("{urn:cn:gov:police:hukou:2026}RequestId"))
    return found


def delete_test_queues(rabbit: Rabbit) -> None:
    def go(ch: Any) -> None:
        for seconds in LADDER:
            ch.queue_delete(retry_name(seconds))

    rabbit._run(go)


async def queue_counts(vhost: str) -> dict[str, tuple[int, int]]:
    """name → (ready, unacked), as the broker sees it."""
    out = await asyncio.to_thread(
        rabbitmqctl, "list_queues", "-p", vhost, "-q", "--no-table-headers",
        "name", "messages_ready", "messages_unacknowledged",
    )  # fmt: skip
    rows = (line.split() for line in out.splitlines() if line.strip())
    return {r[0]: (int(r[1]), int(r[2])) for r in rows if len(r) == 3}


class World:
    def __init__(self, gw: Gateway, fleet: Fleet, ledger: EffectLedger, portal: Portal) -> None:
        self.gw, self.fleet, self.ledger, self.portal = gw, fleet, ledger, portal

    @property
    def police(self) -> HukouSimulator:
        sim = self.fleet.running["hukou"]
        assert isinstance(sim, HukouSimulator)
        return sim

    async def submit(self, example: str = "newborn-yizhang-window") -> str:
        body = json.dumps(example_json(example), ensure_ascii=False).encode()
        answer = await self.portal.submit(body)
        assert answer.status == 202, answer.body
        return str(answer.json()["application_id"])

    async def view(self, app_id: str) -> dict[str, Any]:
        return (await self.portal.show(app_id)).json()  # type: ignore[no-any-return]

    async def status_of(self, app_id: str, wanted: str, within: float = 30) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            view = await self.view(app_id)
            return view if view["status"] == wanted else None

        view = await eventually(probe, within)
        assert view is not None, await self.view(app_id)
        return view  # type: ignore[no-any-return]


@pytest.fixture
async def world_with(
    settings_for: Callable[..., Settings], tmp_path: Path, rabbit: Rabbit
) -> AsyncIterator[Callable[[RetryPolicy], Any]]:
    """Starts the whole gateway and the four simulators; police and provincial platform
    retried by ``retry``."""
    delete_test_queues(rabbit)
    started: list[tuple[Gateway, Fleet, EffectLedger, aiohttp.ClientSession]] = []

    async def start(retry: RetryPolicy) -> World:
        systems = local_systems(tmp_path / "sim", poll_seconds=0.2)
        for name in ("hukou", "provincial"):
            systems[name] = systems[name].model_copy(update={"retry": retry})
        settings = settings_for(systems=systems)
        gw = Gateway(settings)
        await gw.start()
        ledger = EffectLedger(tmp_path / "ledger.sqlite3")
        fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{gw.http_port}")
        await fleet.start()
        session = aiohttp.ClientSession()
        started.append((gw, fleet, ledger, session))
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        return World(gw, fleet, ledger, portal)

    yield start
    for gw, fleet, ledger, session in started:
        await session.close()
        await fleet.stop()
        await gw.stop(drain_seconds=2)
        assert await ledger.double_effects() == []  # nothing twice, in every test
        ledger.close()
    delete_test_queues(rabbit)


async def test_a_department_down_for_a_while_is_retried_through_the_delay_queue(
    world_with: Callable[[RetryPolicy], Any], amqp_vhost: tuple[str, str]
) -> None:
    vhost = amqp_vhost[0]  # queue counts (ready + unacked) are read with rabbitmqctl
    world: World = await world_with(policy())
    world.fleet.behaviour("hukou").outages = list(DOWN_FOR_NOW)
    app_id = await world.submit()
    # more tries than the quick ones: the later ones came back through a delay queue
    assert await eventually(lambda: _at_least(world.police, 4)), submissions(world.police)

    async def waiting_unheld() -> dict[str, tuple[int, int]] | None:
        counts = await queue_counts(vhost)
        waiting = sum(counts.get(retry_name(s), (0, 0))[0] for s in LADDER)
        held = counts.get("gw.tasks.hukou", (0, 0))[1]
        return counts if waiting >= 1 and held == 0 else None

    # seen at least once: the task waiting in a delay queue while nothing holds it unacked
    assert await eventually(waiting_unheld, within=20)
    tries = len(submissions(world.police))
    world.fleet.behaviour("hukou").outages = []  # the police are back
    view = await world.status_of(app_id, "completed")
    hukou = next(t for t in view["tasks"] if t["step"] == "hukou")
    assert hukou["status"] == "completed" and hukou["attempt"] == 1  # retries are no re-dispatch
    assert len(submissions(world.police)) > tries  # it went through after the outage
    assert set(submissions(world.police)) == {f"{app_id}.hukou"}  # one idempotency key
    effects = await world.ledger.effects(app_id)
    assert sorted(e.task for e in effects) == sorted(t["step"] for t in view["tasks"])

    async def drained() -> dict[str, tuple[int, int]] | None:
        counts = await queue_counts(vhost)
        left = {k: v for k, v in counts.items() if k.startswith("gw.retry.") and v != (0, 0)}
        return None if left else counts

    assert await eventually(drained, within=15)  # queue stats lag (quorum tick, 5 s)


async def _at_least(police: HukouSimulator, n: int) -> bool:
    return len(submissions(police)) >= n


async def test_a_spent_budget_dead_letters_with_the_reason_and_blocks_the_application(
    world_with: Callable[[RetryPolicy], Any],
) -> None:
    world: World = await world_with(policy(attempts=4))
    world.fleet.behaviour("hukou").outages = list(DOWN_FOR_NOW)
    app_id = await world.submit()
    view = await world.status_of(app_id, "blocked")
    assert len(submissions(world.police)) == 4  # two quick tries, two through the broker
    hukou = next(t for t in view["tasks"] if t["step"] == "hukou")
    assert hukou["status"] == "dead_lettered"
    assert "retry budget spent after 4 attempts: [hukou] police service Server fault" in (
        hukou["reason"] or ""
    )
    assert world.gw.store is not None

    async def letters() -> list[Any]:
        assert world.gw.store is not None
        return list(await world.gw.store.list_dead_letters(system="hukou"))

    (record,) = await eventually(letters)
    letter = record.letter
    assert letter.reason.startswith("retry budget spent after 4 attempts: ")
    assert "SERVICE_UNAVAILABLE" in letter.reason  # the last error, as the police said it
    assert (letter.attempts, letter.error_kind, letter.application_id) == (4, "retryable", app_id)
    assert letter.first_failed_at < letter.last_failed_at  # kept from the first failure
    assert "hukou" not in {e.task for e in await world.ledger.effects(app_id)}


async def test_a_rest_platform_that_stays_down_blocks_the_application_too(
    world_with: Callable[[RetryPolicy], Any],
) -> None:
    world: World = await world_with(policy(attempts=3))
    world.fleet.behaviour("provincial").outages = list(DOWN_FOR_NOW)
    app_id = await world.submit("retirement-online")
    view = await world.status_of(app_id, "blocked")
    task = next(t for t in view["tasks"] if t["step"] == "file_review")
    assert task["status"] == "dead_lettered"
    assert "retry budget spent after 3 attempts: [provincial]" in (task["reason"] or "")
    assert "http_503" in (task["reason"] or "")  # the last error the platform gave
    refused = [d for d in await world.ledger.deliveries(app_id) if d[1] == "file_review"]
    assert len(refused) == 3  # as many requests as the budget allowed, no more
    assert world.gw.store is not None
    (record,) = await world.gw.store.list_dead_letters(system="provincial")
    assert (record.letter.application_id, record.letter.attempts) == (app_id, 3)


# --- straight onto gw.tasks: the connector role alone -------------------------------------
@pytest.fixture
async def connector_only(
    settings_for: Callable[..., Settings], tmp_path: Path, rabbit: Rabbit
) -> AsyncIterator[Callable[..., Any]]:
    """``connector:hukou`` alone on the test vhost, with a police simulator; the test
    publishes task messages itself and reads gw.results and gw.dead-letters."""
    delete_test_queues(rabbit)
    running: list[tuple[Gateway, Fleet, EffectLedger]] = []

    async def start(system: SystemConfig, clock: Callable[[], float] | None = None) -> Any:
        systems = local_systems(tmp_path / "sim")
        systems["hukou"] = system.model_copy(update={"url": systems["hukou"].url})
        settings = settings_for(systems=systems)
        gw = Gateway(settings, roles=["connector:hukou"], **({"clock": clock} if clock else {}))
        await gw.start()
        ledger = EffectLedger(tmp_path / "ledger.sqlite3")
        fleet = Fleet(settings, ledger)
        await fleet.start(only={"hukou"})
        running.append((gw, fleet, ledger))
        results = rabbit.bind_test_queue("gw.results", "hukou.#")
        return gw, fleet, ledger, results

    yield start
    for gw, fleet, ledger in running:
        await fleet.stop()
        await gw.stop(drain_seconds=2)
        ledger.close()
    delete_test_queues(rabbit)


async def publish_task(gw: Gateway, fields_edit: dict[str, Any] | None = None) -> str:
    request = _birth()
    if fields_edit is not None:
        request = type(request)(**{**asdict(request), "fields": fields_edit})
    await gw.publish("gw.tasks", "hukou.newborn.hukou", task_message(request, "test"))
    return request.task_id


async def test_a_permanent_failure_is_dead_lettered_at_once_without_retries(
    connector_only: Callable[..., Any], rabbit: Rabbit
) -> None:
    gw, fleet, _, results = await connector_only(SystemConfig(kind="soap", retry=policy()))
    police: HukouSimulator = fleet.running["hukou"]
    first = SoapConnector("hukou", SystemConfig(kind="soap", url=police.url))
    try:  # the task id is taken with one body: the same id with another is a Client fault
        await first.send(_birth())
    finally:
        await first.close()
    fields = json.loads(json.dumps(_birth().fields))
    fields["subjects"]["child"]["name"] = "王子涵"
    task_id = await publish_task(gw, fields)
    (got,) = await rabbit.aget_all("gw.dead-letters", wait=15, at_least=1)
    assert got.properties.headers["x-error-kind"] == "permanent"
    assert "Client" in got.properties.headers["x-reason"]
    assert got.properties.headers["x-attempt"] == 1
    assert submissions(police) == [task_id, task_id]  # ours, then the gateway's one try
    (result,) = [r.json() for r in await rabbit.aget_all(results, wait=5, at_least=1)]
    assert (result["kind"], result["attempt"]) == ("dead_lettered", 1)
    assert await rabbit.aget_all(retry_name(LADDER[0])) == []


async def test_a_maintenance_window_holds_the_task_without_a_call_or_a_spent_try(
    connector_only: Callable[..., Any], rabbit: Rabbit, log_capture: Any
) -> None:
    now = [1_798_074_000.0]  # 2026-12-24 09:00 in Shanghai, inside the window below
    config = SystemConfig(
        kind="soap",
        # two tries in all, and the police fail the first after the window: a window that
        # spent a try would leave one, spent on that failure, and dead-letter the task
        retry=policy(attempts=2),
        maintenance=("2026-12-24 08:00-12:00",),
    )
    gw, fleet, ledger, results = await connector_only(config, clock=lambda: now[0])
    police: HukouSimulator = fleet.running["hukou"]
    task_id = await publish_task(gw)

    async def held(times: int) -> bool:
        return log_capture.getvalue().count('"task_held_for_maintenance"') >= times

    assert await eventually(lambda: held(3))  # round the delay queue, three times at least
    assert submissions(police) == []  # the department was never called
    failed: list[bool] = []

    def down_once(now: float | None = None) -> bool:
        failed.append(not failed)
        return failed[-1]  # the first call after the window fails, the next ones work

    police.behaviour.down = down_once  # type: ignore[method-assign]
    now[0] += 3 * 3600  # 12:00: the window is over
    (result,) = [r.json() for r in await rabbit.aget_all(results, wait=15, at_least=1)]
    assert (result["kind"], result["attempt"]) == ("receipt", 1)
    assert failed.count(True) == 1  # the failure after the window did happen
    assert task_id in submissions(police)
    assert await ledger.delivery_count("hukou") == 1
    assert await rabbit.aget_all("gw.dead-letters") == []


# --- what the connectors call transient, over real sockets --------------------------------
@pytest.fixture
async def cut_server() -> AsyncIterator[str]:
    """Answers 200 with a Content-Length it never sends in full, then hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5000\r\n\r\n<s")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


async def test_a_soap_answer_cut_off_midway_is_retryable(cut_server: str) -> None:
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=cut_server + "/hukou"))
    try:
        with pytest.raises(Retryable) as caught:
            await soap.send(_birth())
        assert caught.value.code == "unreachable"
    finally:
        await soap.close()


@pytest.mark.parametrize(
    ("status", "error"), [(408, Retryable), (503, Retryable), (403, Permanent)]
)
async def test_rest_request_timeout_is_retryable_other_4xx_permanent(
    status: int, error: type[Exception]
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/api/cases", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api"
    rest = RestConnector("provincial", SystemConfig(kind="rest", url=url, secret="s" * 16))  # type: ignore[arg-type]
    try:
        with pytest.raises(error) as caught:
            await rest.send(fixture_request("retirement.pension"))
        assert caught.value.code == f"http_{status}"  # type: ignore[attr-defined]
    finally:
        await rest.close()
        await runner.cleanup()


# --- a proxy's error page is an HTTP error, whatever its body -------------------------------
APACHE_503 = (
    b'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>'
    b"<title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1>"
    b"</body></html>\n"
)
HUGE = b"<html>" + b"x" * (3 * 1024 * 1024) + b"</html>"
PAGES = [
    (503, "text/html", APACHE_503),
    (503, "text/html", HUGE),
    (502, "text/xml", APACHE_503),  # a proxy that says XML about its HTML page
    (500, "text/html; charset=iso-8859-1", APACHE_503),
    (429, "text/html", HUGE),
    (408, "text/html", APACHE_503),
]
PAGE_IDS = ["503-apache", "503-2MB", "502-doctype-as-xml", "500-html", "429-2MB", "408"]


@pytest.fixture
async def error_page() -> AsyncIterator[tuple[str, list[tuple[int, str, bytes]]]]:
    """Answers every POST with the page set in the list (status, content type, body)."""
    page: list[tuple[int, str, bytes]] = []

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        status, content_type, body = page[0]
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/hukou", answer)
    app.router.add_post("/api/cases", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", page
    await runner.cleanup()


@pytest.mark.parametrize(("status", "content_type", "body"), PAGES, ids=PAGE_IDS)
async def test_a_soap_proxy_error_page_is_retryable(
    error_page: tuple[str, list[tuple[int, str, bytes]]],
    status: int,
    content_type: str,
    body: bytes,
) -> None:
    base, page = error_page
    page.append((status, content_type, body))
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=base + "/hukou"))
    try:
        with pytest.raises(Retryable) as caught:
            await soap.send(_birth())
        assert caught.value.code == f"http_{status}"
    finally:
        await soap.close()


@pytest.mark.parametrize(("status", "content_type", "body"), PAGES, ids=PAGE_IDS)
async def test_a_rest_proxy_error_page_is_retryable(
    error_page: tuple[str, list[tuple[int, str, bytes]]],
    status: int,
    content_type: str,
    body: bytes,
) -> None:
    base, page = error_page
    page.append((status, content_type, body))
    rest = RestConnector(
        "provincial",
        SystemConfig(kind="rest", url=base + "/api", secret="s" * 16),  # type: ignore[arg-type]
    )
    try:
        with pytest.raises(Retryable) as caught:
            await rest.send(fixture_request("retirement.pension"))
        assert caught.value.code == f"http_{status}"
    finally:
        await rest.close()


async def test_a_huge_200_soap_answer_is_still_refused_by_the_xml_policy(
    error_page: tuple[str, list[tuple[int, str, bytes]]],
) -> None:
    base, page = error_page
    page.append((200, "text/xml", HUGE))
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=base + "/hukou"))
    try:
        with pytest.raises(Permanent) as caught:
            await soap.send(_birth())
        assert caught.value.code == "xml_too_large"
    finally:
        await soap.close()


async def test_a_wsdl_unreachable_at_first_use_is_retryable_and_loaded_later(
    error_page: tuple[str, list[tuple[int, str, bytes]]],
) -> None:
    base, _ = error_page
    port = int(base.rsplit(":", 1)[1])
    closed = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}"
    soap = SoapConnector(
        "hukou", SystemConfig(kind="soap", url=base + "/hukou", wsdl=closed + "/hukou?wsdl")
    )
    try:
        with pytest.raises(Retryable) as caught:  # not a ConfigurationError: not parked
            await soap.send(_birth())
        assert caught.value.code == "wsdl_unreachable"
    finally:
        await soap.close()
