"""OperatorStore on both databases: letter filters, groups, keyset pages, replay and purge
marks, edited copies, application search with scope and overdue, the audit trail; and the
replay transition (``planner.on_replay``) written through ``CaseStore.transition``."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from connectors.base import DepartmentRequest
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage, task_message
from gateway.orchestration.records import Outgoing, TaskStatus
from gateway.store import DeadLetter, Store, operators_of
from gateway.store.audit import AuditEntry
from gateway.store.letters import LetterFilter, LetterStatus
from gateway.store.marks import LetterEdit
from gateway.store.operators import AppFilter
from tests.store.test_cases import accepted, birth_certificate_issued, ctx


def letter(n: int, **kw: object) -> DeadLetter:
    base = DeadLetter(
        message_id=f"m{n}",
        exchange="gw.tasks",
        routing_key="hukou.newborn.hukou",
        headers_json='{"x-task-id": "app1.hukou"}',
        body=b'{"task_id": "app1.hukou"}',
        reason="police refused: HouseholdHeadUnknown",
        error_kind="permanent",
        system="hukou",
        matter="newborn",
        application_id="app1",
        portal_id="window",
        attempts=1,
        first_failed_at=100.0 + n,
        last_failed_at=100.0 + n,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def audit(action: str, target: str) -> AuditEntry:
    return AuditEntry("alice", action, target, at=time.time(), reason="checked")


async def test_filters_groups_and_keyset_pages(store: Store) -> None:
    ops = operators_of(store)
    ids = [await store.add_dead_letter(letter(n), 1.0) for n in range(5)]
    await store.add_dead_letter(
        letter(
            9,
            system="hospital",
            routing_key="hospital.newborn.birth_certificate",
            reason="file rejected: 50%_off",
            application_id="app2",
        ),
        1.0,
    )
    await store.add_dead_letter(
        letter(10, exchange="gw.accepted", system=None, matter=None, reason="unknown app"), 1.0
    )
    everything = await ops.letters(LetterFilter())
    assert len(everything) == 7 and everything[0].id > everything[-1].id  # newest first
    assert everything[0].status is LetterStatus.PARKED and everything[0].replays == 0

    hukou = await ops.letters(LetterFilter(scope=frozenset({"hukou"})))
    assert {x.record.letter.system for x in hukou} == {"hukou"}  # no system-less letter
    assert await ops.letters(LetterFilter(scope=frozenset())) == []
    # reason is a case-insensitive substring; % and _ are literal characters
    assert [x.record.letter.system for x in await ops.letters(LetterFilter(reason="50%_O"))] == [
        "hospital"
    ]
    assert await ops.letters(LetterFilter(reason="5%f")) == []
    assert len(await ops.letters(LetterFilter(matter="newborn", application_id="app1"))) == 5
    window = await ops.letters(LetterFilter(since=101.0, until=103.0))
    assert sorted(x.record.letter.message_id for x in window) == ["m1", "m2"]

    first = await ops.letters(LetterFilter(system="hukou"), limit=2)
    second = await ops.letters(LetterFilter(system="hukou"), limit=2, before=first[-1].id)
    third = await ops.letters(LetterFilter(system="hukou"), limit=2, before=second[-1].id)
    assert [x.id for x in first + second + third] == sorted(ids, reverse=True)  # type: ignore[type-var]

    # reasons that differ only in their volatile parts are one group
    for n, tail in ((20, "timeout after 30 s"), (21, "HTTP 503 at 12:00:07")):
        volatile = f"provincial: retry budget spent after {n % 7} attempts: {tail}"
        await store.add_dead_letter(
            letter(n, system="provincial", reason=volatile, error_kind="retryable"), 1.0
        )
    groups = await ops.groups(LetterFilter())
    assert groups[0].reason == "police refused: HouseholdHeadUnknown"  # permanent: kept
    assert (groups[0].count, groups[0].first_failed_at, groups[0].last_failed_at) == (
        5,
        100.0,
        104.0,
    )
    assert sorted(g.count for g in groups) == [1, 1, 2, 5]
    [budget] = [g for g in groups if g.system == "provincial"]
    assert budget.reason == "provincial: retry budget spent after # attempts: …"
    assert len(await ops.letters(LetterFilter(group=groups[0].reason))) == 5
    assert len(await ops.letters(LetterFilter(group=budget.reason))) == 2
    assert await ops.letters(LetterFilter(group="no such group")) == []


async def test_replay_and_purge_marks_are_guarded_and_audited(store: Store) -> None:
    ops = operators_of(store)
    lid = await store.add_dead_letter(letter(1), 1.0)
    assert lid is not None
    target = f"dead-letter:{lid}"
    assert await ops.mark_replayed(
        lid, "alice", "fixed", 5.0, again=False, audit=audit("r", target)
    )
    # a second replay needs ``again`` (force)
    assert not await ops.mark_replayed(
        lid, "alice", "again", 6.0, again=False, audit=audit("r", target)
    )
    assert await ops.mark_replayed(lid, "bob", "forced", 7.0, again=True, audit=audit("r", target))
    got = await ops.letter(lid)
    assert got is not None
    assert (got.status, got.replays, got.replayed_by, got.replay_reason) == (
        LetterStatus.REPLAYED,
        2,
        "bob",
        "forced",
    )
    assert await ops.letters(LetterFilter()) == []  # the listing shows parked letters
    assert len(await ops.letters(LetterFilter(status=LetterStatus.REPLAYED))) == 1

    assert await ops.mark_purged(lid, "carol", "test data", 8.0, audit=audit("p", target))
    assert not await ops.mark_purged(lid, "carol", "twice", 9.0, audit=audit("p", target))
    purged = await ops.letter(lid)
    assert purged is not None and purged.status is LetterStatus.PURGED
    assert purged.record.letter.body == b"" and purged.record.letter.headers_json == "{}"
    assert (purged.purged_by, purged.purge_reason) == ("carol", "test data")
    assert not await ops.mark_replayed(lid, "bob", "x", 10.0, again=True, audit=audit("r", target))

    trail = await ops.audit_trail(target=target)
    assert [e.action for e in trail] == ["p", "r", "r"]  # only the marks that happened
    assert all(e.operator == "alice" and e.reason == "checked" for e in trail)


async def test_edits_keep_the_original_and_keys_are_unique(store: Store) -> None:
    ops = operators_of(store)
    lid = await store.add_dead_letter(letter(1), 1.0)
    assert lid is not None
    edit = LetterEdit(
        dead_letter_id=lid,
        task_id="app1.hukou",
        idempotency_key="app1.hukou.r1",
        diff=[{"path": "fields.x", "before": "a", "after": "b"}],
        body=b'{"task_id": "app1.hukou.r1"}',
        reason="typo in the head's ID",
        operator="alice",
        at=3.0,
    )
    eid = await ops.add_edit(edit, audit("dlq.edit", f"dead-letter:{lid}"))
    [stored] = await ops.edits(lid)
    assert stored == replace(edit, id=eid)
    original = await ops.letter(lid)
    assert original is not None and original.record.letter.body == b'{"task_id": "app1.hukou"}'
    with pytest.raises(Exception):  # noqa: B017,PT011 -- either driver's constraint error
        await ops.add_edit(edit, audit("dlq.edit", f"dead-letter:{lid}"))
    assert len(await ops.audit_trail(action="dlq.edit")) == 1  # rolled back with the insert
    # a purge erases the personal data of the copies too, in the same transaction
    assert await ops.mark_purged(lid, "carol", "test data", 4.0, audit=audit("p", "x"))
    [erased] = await ops.edits(lid)
    assert (erased.body, list(erased.diff)) == (b"", [])
    assert (erased.idempotency_key, erased.operator, erased.reason) == (
        "app1.hukou.r1",
        "alice",
        "typo in the head's ID",
    )


async def test_application_search_by_scope_overdue_and_pages(store: Store) -> None:
    ops = operators_of(store)
    for app_id in ("app1", "app2", "app3"):
        await accepted(store, app_id)
    await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    everything = await ops.applications(AppFilter())
    assert len(everything) == 3
    # scope: only applications with a task for that system
    assert [a.id for a in await ops.applications(AppFilter(scope=frozenset({"hospital"})))] == [
        "app1"
    ]
    assert await ops.applications(AppFilter(scope=frozenset({"nowhere"}))) == []
    state = await store.cases.load("app1")
    assert state is not None
    due = state.task("birth_certificate").due_at
    assert due is not None
    late = await ops.applications(AppFilter(overdue_at=due + 1))
    assert [a.id for a in late] == ["app1"]
    assert await ops.applications(AppFilter(overdue_at=due - 1)) == []
    on_time = await ops.applications(AppFilter(not_overdue_at=due + 1))
    assert sorted(a.id for a in on_time) == ["app2", "app3"]
    page1 = await ops.applications(AppFilter(), limit=2)
    page2 = await ops.applications(
        AppFilter(), limit=2, before=(page1[-1].created_at, page1[-1].id)
    )
    assert len(page1) == 2 and len(page2) == 1
    assert {a.id for a in page1 + page2} == {"app1", "app2", "app3"}
    assert await ops.application_systems("app1") == {"hospital", "cdc", "hukou", "provincial"}


async def test_overdue_tasks_are_scoped_in_the_query_not_after_its_limit(store: Store) -> None:
    ops = operators_of(store)
    await accepted(store)
    await birth_certificate_issued(store)  # hukou and vaccination (cdc) now run
    state = await store.cases.load("app1")
    assert state is not None
    dues = {t.system: t.due_at for t in state.tasks if t.due_at and t.finished_at is None}
    assert set(dues) == {"hukou", "cdc"} and dues["hukou"] != dues["cdc"]
    later = max(dues, key=lambda k: dues[k] or 0)
    far = (max(d for d in dues.values() if d) or 0) + 1
    assert len(await ops.overdue_tasks(far, 0.8, 10, None)) == 2
    # limit 1: the task of the other system comes first by due time, yet is not seen
    [mine] = await ops.overdue_tasks(far, 0.8, 1, frozenset({later}))
    assert mine.system == later
    assert await ops.overdue_tasks(far, 0.8, 10, frozenset({"hospital"})) == []


def _task_message(key: str) -> Outgoing:
    request = DepartmentRequest(
        key, "app1", "newborn", "hukou", "hukou", "birth_registration", 1, {}
    )
    return Outgoing("gw.tasks", "hukou.newborn.hukou", task_message(request, "2026.1"))


async def _dead_lettered_hukou(store: Store) -> None:
    await accepted(store)
    await birth_certificate_issued(store)
    dead = ResultMessage("app1.hukou", "app1", "hukou", "dead_lettered", 1, reason="police refused")
    await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), dead), 3.0)


async def test_replay_unblocks_the_task_and_the_application(store: Store) -> None:
    await _dead_lettered_hukou(store)
    state = await store.cases.load("app1")
    assert state is not None and state.application.status.value == "blocked"
    order = planner.ReplayOrder(
        "app1.hukou", 1, "alice", "police fixed the register", 7, _task_message("app1.hukou")
    )
    tr, rows = await store.cases.transition(
        "app1", lambda s: planner.on_replay(s, ctx(), order), 4.0
    )
    state = await store.cases.load("app1")
    assert state is not None
    assert state.application.status.value == "in_progress"
    hukou = state.task("hukou")
    assert (hukou.status, hukou.attempt, hukou.request_id) == (
        TaskStatus.DISPATCHED,
        1,
        "app1.hukou",
    )
    [sent] = [r.outgoing.message for r in rows if r.outgoing.exchange == "gw.tasks"]
    assert sent.headers["x-task-id"] == "app1.hukou"
    [entry] = [e for e in await store.cases.timeline("app1") if e.kind == "task.replayed"]
    assert entry.detail["summary"] == "replayed by alice: police fixed the register"
    # the same order again: refused (not dead-lettered) unless forced; forced re-sends only
    with pytest.raises(planner.NotAllowed):
        await store.cases.transition("app1", lambda s: planner.on_replay(s, ctx(), order), 5.0)
    forced = replace(order, force=True)
    tr, rows = await store.cases.transition(
        "app1", lambda s: planner.on_replay(s, ctx(), forced), 6.0
    )
    assert tr.tasks == [] and tr.status is None and len(rows) == 1


async def test_an_edited_copy_is_a_new_attempt_under_an_r_key(store: Store) -> None:
    await _dead_lettered_hukou(store)
    wrong = planner.ReplayOrder(
        "app1.hukou", 1, "alice", "x", 7, _task_message("k"), edited_key="app1.hukou.r2"
    )
    with pytest.raises(planner.NotAllowed):
        await store.cases.transition("app1", lambda s: planner.on_replay(s, ctx(), wrong), 4.0)
    order = replace(wrong, edited_key="app1.hukou.r1")
    await store.cases.transition("app1", lambda s: planner.on_replay(s, ctx(), order), 4.0)
    state = await store.cases.load("app1")
    assert state is not None
    hukou = state.task("hukou")
    assert (hukou.attempt, hukou.request_id) == (2, "app1.hukou.r1")  # stored, read back
    # the department's answer to the copy counts (attempt 2)
    done = ResultMessage(
        "app1.hukou", "app1", "hukou", "decision", 2, outcome="completed", provides={}
    )
    await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), done), 5.0)
    state = await store.cases.load("app1")
    assert state is not None and state.task("hukou").status is TaskStatus.COMPLETED
    # a task that completed gets nothing sent, edited or not
    with pytest.raises(planner.NotAllowed):
        await store.cases.transition("app1", lambda s: planner.on_replay(s, ctx(), order), 6.0)
    plain = replace(order, edited_key=None, attempt=2)
    tr, rows = await store.cases.transition(
        "app1", lambda s: planner.on_replay(s, ctx(), plain), 7.0
    )
    assert rows == [] and [e.kind for e in tr.timeline] == ["task.replay_skipped"]
