"""The Store contract (gateway/store/base.py), held against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar, cast

import pytest

from gateway.errors import Permanent, StoreUnavailable
from gateway.store import (
    ApplicationStatus,
    DeadLetter,
    Fresh,
    InFlight,
    Mismatch,
    NewApplication,
    Replay,
    Store,
    open_store,
)
from gateway.store.sql import Database, Dialect, Params, Row, SqlStore, Tx, Work

Query = Callable[[Store, str], Awaitable[list[tuple[Any, ...]]]]

T0 = 1_700_000_000.0
LEASE = 30.0


def new_app(
    key: str = "key-1", *, portal: str = "window", matter: str = "newborn", at: float = T0
) -> NewApplication:
    return NewApplication(
        id=str(uuid.uuid4()),
        portal_id=portal,
        idempotency_key=key,
        channel="http",
        matter=matter,
        schema_version="1.0",
        envelope_json=json.dumps({"matter": matter}),
        fingerprint="f" * 64,
        created_at=at,
    )


def letter(message_id: str = "m-1", *, system: str | None = "hukou") -> DeadLetter:
    return DeadLetter(
        message_id=message_id,
        exchange="gw.tasks",
        routing_key=f"{system}.newborn.register",
        headers_json='{"x-attempt": 3}',
        body=bytes(range(256)),
        reason="SOAP fault: 出生医学证明编号无效",
        error_kind="permanent",
        system=system,
        matter="newborn",
        application_id="app-1",
        portal_id="window",
        attempts=3,
        first_failed_at=T0,
        last_failed_at=T0 + 5.5,
    )


async def test_dialect_and_ping(store: Store, store_url: str) -> None:
    assert store.dialect == store_url.split(":")[0]
    await store.ping()


async def test_closed_store_is_unavailable(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()


# --- nonces ---------------------------------------------------------------------------


async def test_nonce_reuse_within_ttl_is_refused(store: Store) -> None:
    assert await store.remember_nonce("window", "n1", T0, ttl=300)
    assert not await store.remember_nonce("window", "n1", T0 + 299.9, ttl=300)
    assert await store.remember_nonce("mobile", "n1", T0 + 1, ttl=300)  # per portal
    assert await store.remember_nonce("window", "n2", T0 + 1, ttl=300)


async def test_nonce_is_accepted_again_after_expiry(store: Store) -> None:
    assert await store.remember_nonce("window", "n1", T0, ttl=300)
    assert await store.remember_nonce("window", "n1", T0 + 300, ttl=300)
    assert not await store.remember_nonce("window", "n1", T0 + 301, ttl=300)


async def test_expired_nonces_are_purged(store: Store, query: Query) -> None:
    for i in range(5):
        assert await store.remember_nonce("window", f"old-{i}", T0, ttl=10)
    assert await store.remember_nonce("window", "new", T0 + 3600, ttl=10)
    assert await query(store, "SELECT nonce FROM nonces") == [("new",)]


# --- idempotency ----------------------------------------------------------------------


async def test_new_key_is_fresh_then_in_flight_while_leased(store: Store) -> None:
    assert await store.claim_idempotency("window", "k", "fp", T0, LEASE) == Fresh(None)
    claim = await store.claim_idempotency("window", "k", "fp", T0 + 29.9, LEASE)
    assert claim == InFlight(lease_until=T0 + LEASE)


async def test_other_body_is_a_mismatch_even_while_in_flight(store: Store) -> None:
    await store.claim_idempotency("window", "k", "fp", T0, LEASE)
    assert await store.claim_idempotency("window", "k", "other", T0 + 1, LEASE) == Mismatch()


async def test_keys_are_per_portal(store: Store) -> None:
    await store.claim_idempotency("window", "k", "fp", T0, LEASE)
    assert await store.claim_idempotency("mobile", "k", "other", T0, LEASE) == Fresh(None)


async def test_expired_lease_is_taken_over(store: Store) -> None:
    await store.claim_idempotency("window", "k", "fp", T0, LEASE)
    assert await store.claim_idempotency("window", "k", "fp", T0 + LEASE, LEASE) == Fresh(None)
    # the new holder's lease now counts from the takeover
    claim = await store.claim_idempotency("window", "k", "fp", T0 + LEASE + 1, LEASE)
    assert claim == InFlight(lease_until=T0 + 2 * LEASE)


async def test_completed_key_replays_byte_for_byte(store: Store) -> None:
    body = b'{"title": "\xe5\x8f\x97\xe7\x90\x86"}\x00\xff' + bytes(range(256))
    await store.claim_idempotency("window", "k", "fp", T0, LEASE)
    await store.complete_idempotency("window", "k", 422, body, "application/problem+json")
    claim = await store.claim_idempotency("window", "k", "fp", T0 + 1, LEASE)
    assert claim == Replay(422, body, "application/problem+json", None)
    assert isinstance(claim, Replay)
    assert type(claim.body) is bytes
    # a different body is still a mismatch, before any replay
    assert await store.claim_idempotency("window", "k", "other", T0 + 2, LEASE) == Mismatch()
    # releasing a completed key changes nothing
    await store.release_idempotency("window", "k")
    assert await store.claim_idempotency("window", "k", "fp", T0 + 3, LEASE) == claim


async def test_release_lets_the_key_retry_with_its_application(store: Store) -> None:
    app = new_app("k")
    assert await store.claim_idempotency("window", "k", "fp", T0, LEASE) == Fresh(None)
    await store.create_application(app)
    await store.release_idempotency("window", "k")  # the broker was down: 503
    assert await store.claim_idempotency("window", "k", "fp", T0 + 1, LEASE) == Fresh(app.id)
    assert await store.claim_idempotency("window", "k", "fp", T0 + 2, LEASE) == InFlight(
        T0 + 1 + LEASE
    )
    await store.complete_idempotency("window", "k", 202, b"{}", "application/json")
    assert await store.claim_idempotency("window", "k", "fp", T0 + 3, LEASE) == Replay(
        202, b"{}", "application/json", app.id
    )


async def test_one_of_two_concurrent_claims_wins(store: Store, store_url: str) -> None:
    other = await open_store(store_url)
    try:
        claims = await asyncio.gather(
            store.claim_idempotency("window", "k", "fp", T0, LEASE),
            other.claim_idempotency("window", "k", "fp", T0, LEASE),
        )
    finally:
        await other.close()
    assert sorted(map(repr, claims)) == [repr(Fresh(None)), repr(InFlight(T0 + LEASE))]


# --- applications ---------------------------------------------------------------------


async def test_create_and_read_back(store: Store) -> None:
    app = new_app()
    await store.create_application(app)
    record = await store.get_application(app.id)
    assert record is not None
    assert (record.id, record.portal_id, record.idempotency_key, record.channel) == (
        app.id,
        "window",
        "key-1",
        "http",
    )
    assert (record.matter, record.schema_version, record.envelope_json) == (
        "newborn",
        "1.0",
        app.envelope_json,
    )
    assert record.status is ApplicationStatus.RECEIVED
    assert (record.created_at, record.updated_at, record.accepted_at) == (T0, T0, None)
    assert record.version == 1
    assert await store.find_application("window", "key-1") == record
    assert await store.find_application("mobile", "key-1") is None
    assert await store.get_application("missing") is None


async def test_second_application_under_one_key_is_refused(store: Store) -> None:
    first = new_app("k")
    await store.create_application(first)
    with pytest.raises(Permanent):
        await store.create_application(new_app("k"))
    assert [a.id for a in await store.list_applications()] == [first.id]


async def test_create_links_idempotency_in_the_same_transaction(store: Store) -> None:
    app = new_app("k")
    await store.claim_idempotency("window", "k", "fp", T0, LEASE)
    failing = SqlStore(FailingDatabase(cast(SqlStore, store).database, "UPDATE idempotency"))
    with pytest.raises(StoreUnavailable):
        await failing.create_application(app)
    assert await store.get_application(app.id) is None  # the insert was rolled back

    await store.create_application(app)
    await store.release_idempotency("window", "k")
    assert await store.claim_idempotency("window", "k", "fp", T0 + 1, LEASE) == Fresh(app.id)


async def test_mark_accepted_only_from_received(store: Store) -> None:
    app = new_app()
    await store.create_application(app)
    assert await store.mark_accepted(app.id, T0 + 2)
    record = await store.get_application(app.id)
    assert record is not None
    assert record.status is ApplicationStatus.ACCEPTED
    assert (record.accepted_at, record.updated_at, record.version) == (T0 + 2, T0 + 2, 2)
    assert not await store.mark_accepted(app.id, T0 + 3)
    assert await store.get_application(app.id) == record
    assert not await store.mark_accepted("missing", T0 + 3)


async def test_list_applications_filters_newest_first(store: Store) -> None:
    a = new_app("a", portal="window", matter="newborn", at=T0)
    b = new_app("b", portal="mobile", matter="newborn", at=T0 + 10)
    c = new_app("c", portal="window", matter="housing", at=T0 + 20)
    for app in (a, b, c):
        await store.create_application(app)
    await store.mark_accepted(c.id, T0 + 21)

    async def ids(**filters: Any) -> list[str]:
        return [r.id for r in await store.list_applications(**filters)]

    assert await ids() == [c.id, b.id, a.id]
    assert await ids(status=ApplicationStatus.RECEIVED) == [b.id, a.id]
    assert await ids(status=ApplicationStatus.ACCEPTED) == [c.id]
    assert await ids(matter="newborn") == [b.id, a.id]
    assert await ids(portal_id="window") == [c.id, a.id]
    assert await ids(portal_id="window", matter="newborn") == [a.id]
    assert await ids(created_from=T0 + 10) == [c.id, b.id]
    assert await ids(created_to=T0 + 20) == [b.id, a.id]
    assert await ids(created_from=T0 + 5, created_to=T0 + 15) == [b.id]
    assert await ids(limit=2) == [c.id, b.id]


# --- the outbox relay -----------------------------------------------------------------


async def test_claim_unpublished_leases_old_received_rows(store: Store) -> None:
    old = new_app("old", at=T0)
    older = new_app("older", at=T0 - 5)
    young = new_app("young", at=T0 + 55)
    done = new_app("done", at=T0)
    for app in (old, older, young, done):
        await store.create_application(app)
    await store.mark_accepted(done.id, T0 + 1)

    async def claim(now: float, limit: int = 10) -> list[str]:
        batch = await store.claim_unpublished(now, older_than=10, lease_seconds=30, limit=limit)
        assert all(a.status is ApplicationStatus.RECEIVED for a in batch)
        return [a.id for a in batch]

    now = T0 + 60
    assert await claim(now) == [older.id, old.id]  # oldest first; young and done are not due
    assert await claim(now + 29) == [young.id]  # the others are leased
    assert await claim(now + 30) == [older.id, old.id]  # their lease ran out
    assert await store.mark_accepted(old.id, now + 31)  # the relay's publish was confirmed
    assert await claim(now + 100, limit=1) == [older.id]
    assert await claim(now + 100) == [young.id]


async def test_claim_unpublished_does_not_change_the_application(store: Store) -> None:
    app = new_app()
    await store.create_application(app)
    before = await store.get_application(app.id)
    [claimed] = await store.claim_unpublished(T0 + 60, older_than=10, lease_seconds=30, limit=1)
    assert claimed == before == await store.get_application(app.id)


@pytest.mark.parametrize("relays", ["one store", "four stores"])
async def test_concurrent_relays_never_share_a_row(
    store: Store, store_url: str, relays: str
) -> None:
    apps = [new_app(f"k{i}", at=T0 + i) for i in range(60)]
    for app in apps:
        await store.create_application(app)
    others = [await open_store(store_url) for _ in range(3)] if relays == "four stores" else []
    try:
        stores = [store, *others] if others else [store] * 4
        batches = await asyncio.gather(
            *(s.claim_unpublished(T0 + 100, 10, 30, 7) for s in stores for _ in range(4))
        )
    finally:
        for other in others:
            await other.close()
    claimed = [a.id for batch in batches for a in batch]
    assert len(claimed) == len(set(claimed))  # no row went to two relays
    assert sorted(claimed) == sorted(a.id for a in apps)  # and none was left behind


# --- dead letters ---------------------------------------------------------------------


async def test_dead_letter_round_trip(store: Store) -> None:
    kept = letter()
    first = await store.add_dead_letter(kept, T0 + 6)
    assert first is not None
    [record] = await store.list_dead_letters()
    assert (record.id, record.letter, record.stored_at) == (first, kept, T0 + 6)
    assert type(record.letter.body) is bytes


async def test_same_message_id_is_kept_once(store: Store) -> None:
    assert await store.add_dead_letter(letter("m-1"), T0) is not None
    again = replace(letter("m-1"), reason="redelivered copy", attempts=4)
    assert await store.add_dead_letter(again, T0 + 1) is None
    [record] = await store.list_dead_letters()
    assert record.letter == letter("m-1")


async def test_list_dead_letters_newest_first_by_system(store: Store) -> None:
    ids = [
        await store.add_dead_letter(letter(f"m-{i}", system=system), T0 + i)
        for i, system in enumerate(["hukou", "provincial", "hukou", None])
    ]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(i or 0 for i in ids)  # ids grow with each new letter
    assert [r.id for r in await store.list_dead_letters()] == ids[::-1]
    assert [r.id for r in await store.list_dead_letters(system="hukou")] == [ids[2], ids[0]]
    assert [r.id for r in await store.list_dead_letters(limit=1)] == [ids[3]]


# --- a database that fails on cue -----------------------------------------------------

T = TypeVar("T")


class FailingTx:
    def __init__(self, tx: Tx, prefix: str) -> None:
        self._tx = tx
        self._prefix = prefix

    async def execute(self, sql: str, params: Params = ()) -> int:
        if sql.startswith(self._prefix):
            raise StoreUnavailable("connection lost", system="store")
        return await self._tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._tx.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._tx.fetchall(sql, params)


class FailingDatabase:
    """The real database, except that statements starting with ``prefix`` fail."""

    def __init__(self, db: Database, prefix: str) -> None:
        self._db = db
        self._prefix = prefix

    @property
    def dialect(self) -> Dialect:
        return self._db.dialect

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._db.transaction() as tx:
            yield FailingTx(tx, self._prefix)

    async def run(self, work: Work[T]) -> T:
        return await self._db.run(lambda tx: work(FailingTx(tx, self._prefix)))

    async def close(self) -> None:
        await self._db.close()


async def test_create_returns_the_stored_record_and_accept_and_answer_is_one_step(
    store: Store,
) -> None:
    app = new_app("k")
    await store.claim_idempotency("window", "k", "fp", T0, LEASE)
    created = await store.create_application(app)
    assert created == await store.get_application(app.id)
    assert await store.accept_and_answer(
        app.id, T0 + 1, "window", "k", 202, b"{}", "application/json"
    )
    accepted = await store.get_application(app.id)
    assert accepted is not None
    assert (accepted.status, accepted.accepted_at, accepted.version) == (
        ApplicationStatus.ACCEPTED,
        T0 + 1,
        2,
    )
    assert await store.claim_idempotency("window", "k", "fp", T0 + 2, LEASE) == Replay(
        202, b"{}", "application/json", app.id
    )
    # a second time (the relay got there first): no change of status, answer still stored
    assert not await store.accept_and_answer(
        app.id, T0 + 3, "window", "k", 202, b"{}", "application/json"
    )
