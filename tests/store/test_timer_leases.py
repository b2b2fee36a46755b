"""Poll timers and the lease a poller's claim writes: the poller drops or reschedules only the
row it claimed (runner ``_poll_timer``), so the lease it holds must match that row exactly and
no other row: not a timer written anew since, whatever the database prints a float as."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

from gateway.orchestration.records import PollTimer, TimelineEntry, Transition
from gateway.store import Store, open_store
from tests.store.test_cases import hukou_receipt


async def test_a_timer_written_anew_over_a_claimed_row_outlives_the_stale_poll(
    store: Store,
) -> None:
    await hukou_receipt(store)
    now = time.time() + 1
    [claimed] = await store.cases.claim_timers("hukou", now, 60, 10)
    anew = Transition(
        timeline=[TimelineEntry(4.0, "task.submitted", "app1.hukou")],
        timers=[PollTimer("app1.hukou", "hukou", now + 5)],
    )  # the row is still there, claimed: the write lands on it
    await store.cases.transition("app1", lambda s: anew, 4.0)
    await store.cases.delete_timer("app1.hukou", claimed.lease_until)  # the stale poll
    await store.cases.reschedule_timer("app1.hukou", now + 999, claimed.lease_until)
    [fresh] = await store.cases.claim_timers("hukou", now + 6, 60, 10)
    assert (fresh.task_id, fresh.due_at) == ("app1.hukou", now + 5)


@pytest.mark.postgres
async def test_a_claimed_lease_matches_its_row_when_postgresql_prints_floats_short(
    postgres_url: str,
) -> None:
    """extra_float_digits = 0 (the default before PostgreSQL 12): a float is printed with 15
    significant digits, so a lease read back is not the lease stored."""
    parts = urlsplit(postgres_url)
    query = [
        (k, f"{v} -c extra_float_digits=0" if k == "options" else v)
        for k, v in parse_qsl(parts.query)
    ]
    store = await open_store(urlunsplit(parts._replace(query=urlencode(query, quote_via=quote))))
    try:
        await hukou_receipt(store)
        now = time.time() + 4 / 3  # 17 significant digits
        [claimed] = await store.cases.claim_timers("hukou", now, 60, 10)
        await store.cases.reschedule_timer("app1.hukou", now + 1, claimed.lease_until)
        [again] = await store.cases.claim_timers("hukou", now + 2, 60, 10)
        assert again.due_at == pytest.approx(now + 1)  # rescheduled, not left leased
        await store.cases.delete_timer("app1.hukou", again.lease_until)
        assert await store.cases.claim_timers("hukou", 1e12, 60, 10) == []
    finally:
        await store.close()
