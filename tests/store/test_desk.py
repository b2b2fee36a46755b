"""The dead-letter desk over a real store (both databases): a replay's marks and audit row
commit with the planner's transition even when the broker does not confirm; a purge does
not strand a blocked application; paging through a "replay all"; the letters the gateway
writes itself (a field missing at dispatch) edited with ``add``; an intake letter replayed
through intake as its portal; an unmasked read needs a reason."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.base import Decision, DepartmentRequest, Receipt
from gateway.admin.auth import ROLES, Operator, OperatorAuth
from gateway.admin.copies import Invalid
from gateway.admin.desk import Desk
from gateway.admin.http import AdminApi
from gateway.admin.outcomes import Conflict
from gateway.admin.resubmit import Resubmit
from gateway.broker.messages import Delivery, Message
from gateway.deadletters import dead_letter_from
from gateway.errors import BrokerUnavailable, Permanent
from gateway.intake.service import IntakeService
from gateway.metrics import Metrics
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import TaskStatus
from gateway.orchestration.runner import ConnectorRunner
from gateway.settings import OperatorConfig
from gateway.store import Store, operators_of
from gateway.store.letters import LetterFilter, LetterStatus
from gateway.store.operators import AppFilter
from tests.store.test_cases import accepted, birth_certificate_issued, ctx
from tests.support.portal import example

LEAD = Operator("lead", frozenset(ROLES), frozenset())


class Broker:
    """What the desk publishes; ``down`` makes every publish unconfirmed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Message]] = []
        self.down = False

    async def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        if self.down:
            raise BrokerUnavailable("no confirm")
        self.sent.append((exchange, routing_key, message))

    def tasks(self) -> list[dict[str, Any]]:
        return [json.loads(m.body) for x, _, m in self.sent if x == "gw.tasks"]


def delivery_of(exchange: str, routing_key: str, message: Message, **kw: Any) -> Delivery:
    """A message as the dead-letter store receives it from ``gw.dead-letters``."""
    return Delivery(
        body=message.body,
        exchange=exchange,
        routing_key=routing_key,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        user_id=kw.get("user_id"),
        headers=dict(message.headers),
        content_type=message.content_type,
        redelivered=False,
        _settle=lambda how: None,
    )


async def park(store: Store, exchange: str, routing_key: str, message: Message) -> int:
    letter = dead_letter_from(delivery_of(exchange, routing_key, message), time.time())
    letter_id = await store.add_dead_letter(letter, time.time())
    assert letter_id is not None
    return letter_id


async def hukou_refused(store: Store) -> int:
    """app1 blocked: the police refused its hukou task; the letter as the runner parks it."""
    await accepted(store)
    await birth_certificate_issued(store)
    [row] = [
        r
        for r in await store.cases.claim_outbox(time.time() + 60, 30, 100)
        if r.outgoing.exchange == "gw.tasks" and r.outgoing.routing_key.startswith("hukou")
    ]
    letter = planner.dead_letter_of(row.outgoing, "police refused: household head unknown")
    letter_id = await park(store, "gw.dlx", letter.routing_key, letter.message)
    dead = ResultMessage("app1.hukou", "app1", "hukou", "dead_lettered", 1, reason="refused")
    await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), dead), 3.0)
    return letter_id


async def test_an_unconfirmed_replay_is_marked_and_audited_with_its_transition(
    store: Store,
) -> None:
    letter_id = await hukou_refused(store)
    broker = Broker()
    broker.down = True
    desk = Desk(store, broker.publish)
    done = await desk.replay(LEAD, letter_id, "police fixed the register")
    assert done.pending and done.sent and "relay" in done.note
    letter = await operators_of(store).letter(letter_id)
    assert letter is not None and letter.status is LetterStatus.REPLAYED
    [entry] = await operators_of(store).audit_trail(action="dlq.replay")
    assert entry.target == f"dead-letter:{letter_id}"
    # written before any broker confirm: the row says queued, never "sent"
    assert entry.details["queued"] is True and "sent" not in entry.details
    state = await store.cases.load("app1")
    assert state is not None and state.task("hukou").status is TaskStatus.DISPATCHED
    left = await store.cases.claim_outbox(time.time() + 60, 30, 100)
    assert [r.outgoing.routing_key for r in left if r.outgoing.exchange == "gw.tasks"] == [
        "hukou.newborn.hukou"
    ]  # the relay sends it


async def test_a_purge_does_not_strand_a_blocked_application(store: Store) -> None:
    letter_id = await hukou_refused(store)
    broker = Broker()
    desk = Desk(store, broker.publish)
    with pytest.raises(Conflict, match="cancel_task"):
        await desk.purge(LEAD, letter_id, "test data")
    letter = await operators_of(store).letter(letter_id)
    assert letter is not None and letter.status is LetterStatus.PARKED  # nothing changed
    done = await desk.purge(LEAD, letter_id, "citizen withdrew by phone", cancel_task=True)
    assert done.cancelled == "app1.hukou" and done.application_status == "in_progress"
    state = await store.cases.load("app1")
    assert state is not None and state.application.status.value == "in_progress"
    assert state.task("hukou").status is TaskStatus.CANCELLED
    assert state.task("medical_insurance").status is TaskStatus.CANCELLED  # needs hukou
    letter = await operators_of(store).letter(letter_id)
    assert letter is not None and letter.status is LetterStatus.PURGED
    [entry] = await operators_of(store).audit_trail(action="dlq.purge")
    assert entry.details["cancelled"] == "app1.hukou"
    # a letter whose task moved on is purged without ceremony
    other = await park(
        store, "gw.dlx", "x", Message(b"{}", headers={"x-original-exchange": "gw.results"})
    )
    assert (await desk.purge(LEAD, other, "noise")).cancelled is None


async def test_replay_all_pages_through_every_match_oldest_first(store: Store) -> None:
    ids = [
        await park(
            store,
            "gw.dlx",
            "hospital.newborn.birth_certificate",
            Message(
                f'{{"n": {n}}}'.encode(),
                message_id=f"r{n}",
                headers={"x-original-exchange": "gw.results", "x-reason": f"bad {n}"},
            ),
        )
        for n in range(5)
    ]
    broker = Broker()
    desk = Desk(store, broker.publish)
    first = await desk.replay_matching(LEAD, LetterFilter(), "consumer fixed", limit=2)
    assert [r.letter_id for r in first.replayed] == ids[:2]
    assert first.more and first.next_after == ids[1]
    second = await desk.replay_matching(
        LEAD, LetterFilter(), "consumer fixed", limit=2, after=first.next_after
    )
    third = await desk.replay_matching(
        LEAD, LetterFilter(), "consumer fixed", limit=2, after=second.next_after
    )
    assert [r.letter_id for r in second.replayed + third.replayed] == ids[2:]
    assert not third.more and third.next_after is None
    assert [json.loads(m.body)["n"] for _, _, m in broker.sent] == [0, 1, 2, 3, 4]


async def test_a_field_missing_at_dispatch_is_a_letter_an_edit_with_add_fixes(
    store: Store,
) -> None:
    await accepted(store)
    await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    no_number = ResultMessage(
        "app1.birth_certificate", "app1", "hospital", "decision", 1, outcome="completed"
    )
    _, rows = await store.cases.transition(
        "app1", lambda s: planner.on_result(s, ctx(), no_number), 2.0
    )
    parked = {
        r.outgoing.routing_key: await park(
            store, "gw.dlx", r.outgoing.routing_key, r.outgoing.message
        )
        for r in rows
        if r.outgoing.exchange == "gw.dlx"
    }
    assert set(parked) == {"hukou.newborn.hukou", "cdc.newborn.vaccination"}
    letter = await operators_of(store).letter(parked["hukou.newborn.hukou"])
    assert letter is not None and letter.record.letter.system == "hukou"
    assert letter.record.letter.error_kind == "permanent"
    broker = Broker()
    desk = Desk(store, broker.publish)
    missing = {"fields.provided.birth_certificate_no": "A123456789"}
    with pytest.raises(Invalid) as caught:  # not in the message: a typo unless added
        await desk.edit(LEAD, letter.id, missing, "number from the paper certificate")
    assert [e["loc"] for e in caught.value.errors] == list(missing)
    done = await desk.edit(LEAD, letter.id, {}, "number from the paper certificate", add=missing)
    assert done.key == "app1.hukou.r1" and not done.pending
    [sent] = broker.tasks()
    assert sent["task_id"] == "app1.hukou.r1"
    assert sent["fields"]["provided"] == {"birth_certificate_no": "A123456789"}
    state = await store.cases.load("app1")
    assert state is not None and state.task("hukou").status is TaskStatus.DISPATCHED
    assert state.application.status.value == "blocked"  # vaccination is still parked
    [edit] = await operators_of(store).edits(letter.id)
    assert edit.idempotency_key == "app1.hukou.r1"
    trail = await operators_of(store).audit_trail(target=f"dead-letter:{letter.id}")
    assert [e.action for e in trail] == ["dlq.edit"]  # one action, one row
    assert trail[0].details["queued"] is True and trail[0].details["key"] == "app1.hukou.r1"


async def test_an_intake_letter_is_replayed_through_intake_as_its_portal(store: Store) -> None:
    broker = Broker()
    service = IntakeService(store, broker.publish, Metrics())
    users = {"window-user": "window"}
    desk = Desk(store, broker.publish, resubmit=Resubmit(service, users.get, max_body_bytes=10**6))
    # parked because the broker user was not configured yet; now it is
    unknown = Message(
        example("newborn-yizhang-window"),
        message_id="intake:window-user:k-1",
        headers={
            "x-original-exchange": "gw.intake",
            "x-reason": "broker user 'window-user' is not a configured portal",
            "x-amqp-user": "window-user",
            "x-idempotency-key": "k-1",
        },
    )
    letter_id = await park(store, "gw.dlx", "window", unknown)
    done = await desk.replay(LEAD, letter_id, "amqp_user added to the config")
    assert done.sent and "accepted by intake" in done.note
    [app] = await operators_of(store).applications(AppFilter())
    assert (app.portal_id, app.idempotency_key, app.channel) == ("window", "k-1", "amqp")
    assert [x for x, _, _ in broker.sent] == ["gw.accepted"]
    again = await desk.replay(LEAD, letter_id, "again", force=True)
    assert not again.sent and "accepted before" in again.note  # idempotent on the key
    assert len(broker.sent) == 1
    nobody = Message(b"{}", message_id="intake:-:m", headers={"x-original-exchange": "gw.intake"})
    with pytest.raises(Conflict, match="portal must resend"):
        await desk.replay(LEAD, await park(store, "gw.dlx", "x", nobody), "try")


async def test_an_unmasked_read_needs_a_reason(store: Store) -> None:
    letter_id = await hukou_refused(store)
    desk = Desk(store, Broker().publish)
    with pytest.raises(Invalid, match="why"):
        await desk.letter(LEAD, letter_id, unmask=True)
    with pytest.raises(Invalid, match="why"):
        await desk.application(LEAD, "app1", unmask=True, why="  ")
    assert (await desk.letter(LEAD, letter_id, unmask=True, why="citizen called")).unmasked
    [entry] = await operators_of(store).audit_trail(action="dead_letter.unmask")
    assert entry.reason == "citizen called"


class RefusesStatusQueries:
    """A department that answers a status query with a permanent refusal."""

    system = "hukou"
    polls = True

    async def send(self, request: DepartmentRequest) -> Receipt:
        raise AssertionError("polling never sends")

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision:
        raise Permanent("unknown case number", code="unknown_case")

    async def close(self) -> None:
        return None


async def test_a_refused_status_query_parks_the_task_message_for_replay(store: Store) -> None:
    await accepted(store)
    await birth_certificate_issued(store)
    receipt = ResultMessage("app1.hukou", "app1", "hukou", "receipt", 1, case_number="C-1")
    await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), receipt), 3.0)
    broker = Broker()
    runner = ConnectorRunner(
        "hukou",
        RefusesStatusQueries(),
        store.cases,
        broker.publish,
        poll_seconds=60,  # type: ignore[arg-type]
    )
    assert await runner.poll_once() == 1
    [(exchange, key, letter)] = [s for s in broker.sent if s[0] == "gw.dlx"]
    assert key == "hukou.newborn.hukou" and letter.headers["x-task-id"] == "app1.hukou"
    assert "refused the status query" in letter.headers["x-reason"]
    task = json.loads(letter.body)
    assert task["task_id"] == "app1.hukou" and task["fields"]["provided"]  # what was sent
    [(_, _, result)] = [s for s in broker.sent if s[0] == "gw.results"]
    dead = ResultMessage.parse(result.body)
    await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), dead), 4.0)
    letter_id = await park(store, exchange, key, letter)
    stored = await operators_of(store).letter(letter_id)
    assert stored is not None and stored.record.letter.system == "hukou"

    done = await Desk(store, broker.publish).replay(LEAD, letter_id, "police found the case")
    assert done.sent and done.key == "app1.hukou"
    state = await store.cases.load("app1")
    assert state is not None and state.application.status.value == "in_progress"
    assert broker.tasks()[-1]["fields"] == task["fields"]  # the department sees it again


async def test_the_api_answers_202_when_the_outbox_will_send_the_replay(store: Store) -> None:
    letter_id = await hukou_refused(store)
    broker = Broker()
    broker.down = True
    auth = OperatorAuth({"lead": OperatorConfig(token="lead-token-0123456789", roles=ROLES)})  # type: ignore[arg-type]
    api = AdminApi(auth, Desk(store, broker.publish), timezone=dt.UTC)
    app = web.Application()
    api.add_routes(app)
    async with (
        TestServer(app) as server,
        aiohttp.ClientSession() as session,
        session.post(
            server.make_url(f"/v1/admin/dead-letters/{letter_id}/replay"),
            json={"reason": "police fixed the register"},
            headers={"Authorization": "Bearer lead-token-0123456789"},
        ) as resp,
    ):
        assert resp.status == 202, await resp.text()
        body = await resp.json()
    assert body["pending"] is True and body["key"] == "app1.hukou"


async def test_a_dead_answer_is_replayed_by_dispatching_its_task_again(store: Store) -> None:
    """A department's receipt that died dead-lettered its task: the planner would drop the
    same receipt republished, so replaying it re-dispatches the task under the same request
    id; purging it alone is refused like a task letter's."""
    await accepted(store)
    await birth_certificate_issued(store)
    receipt = ResultMessage("app1.hukou", "app1", "hukou", "receipt", 1, case_number="HK-1")
    letter_id = await park(store, "gw.results", "hukou.newborn.hukou", receipt.message())
    dead = ResultMessage("app1.hukou", "app1", "hukou", "dead_lettered", 1, reason="died")
    await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), dead), 3.0)
    broker = Broker()
    desk = Desk(store, broker.publish)
    with pytest.raises(Conflict, match="cancel_task"):
        await desk.purge(LEAD, letter_id, "test data")
    done = await desk.replay(LEAD, letter_id, "orchestrator fixed")
    assert done.sent and not done.pending
    [task] = broker.tasks()
    assert task["task_id"] == "app1.hukou" and task["attempt"] == 1  # the same request
    state = await store.cases.load("app1")
    assert state is not None and state.application.status.value == "in_progress"
    assert state.task("hukou").status is TaskStatus.DISPATCHED
    assert not [x for x, _, _ in broker.sent if x == "gw.results"]
