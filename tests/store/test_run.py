"""``Database.run`` and ``Store.admit``, the hot path, on SQLite and PostgreSQL alike.

On SQLite concurrent ``run`` calls are grouped into one commit; each work must still
commit or roll back on its own, and its result or error go to its own caller.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import cast

import pytest

from gateway.store import Fresh, InFlight, Mismatch, NewApplication, Replay, Store, open_store
from gateway.store.base import Answer, Nonce, NonceReused
from gateway.store.sql import SqlStore, Tx

T0 = 1_700_000_000.0
LEASE = 30.0


def new_app(key: str, fingerprint: str = "f" * 64) -> NewApplication:
    return NewApplication(
        id=str(uuid.uuid4()),
        portal_id="window",
        idempotency_key=key,
        channel="http",
        matter="newborn",
        schema_version="1.0",
        envelope_json=json.dumps({"matter": "newborn"}),
        fingerprint=fingerprint,
        created_at=T0,
    )


class Boom(Exception):
    pass


async def test_concurrent_works_commit_or_roll_back_each_on_its_own(store: Store) -> None:
    db = cast(SqlStore, store).database

    def insert(n: int) -> object:
        async def work(tx: Tx) -> int:
            await tx.execute(
                "INSERT INTO nonces (portal_id, nonce, expires_at) VALUES (?, ?, ?)",
                ("window", f"n{n}", T0),
            )
            if n % 3 == 0:
                raise Boom(n)
            row = await tx.fetchone(
                "SELECT count(*) FROM nonces WHERE portal_id = ? AND nonce = ?",
                ("window", f"n{n}"),
            )
            assert row is not None
            return int(row[0]) * 100 + n

        return db.run(work)

    results = await asyncio.gather(*(insert(n) for n in range(12)), return_exceptions=True)  # type: ignore[call-overload]
    for n, result in enumerate(results):
        if n % 3 == 0:
            assert isinstance(result, Boom)
            assert result.args == (n,)
        else:
            assert result == 100 + n  # its own row, seen inside its own transaction

    async def stored(tx: Tx) -> set[str]:
        return {r[0] for r in await tx.fetchall("SELECT nonce FROM nonces")}

    assert await db.run(stored) == {f"n{n}" for n in range(12) if n % 3}


async def test_a_failed_statement_rolls_back_only_its_work(store: Store) -> None:
    db = cast(SqlStore, store).database

    async def duplicate(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO nonces (portal_id, nonce, expires_at) VALUES (?, ?, ?)", ("w", "dup", 1.0)
        )
        await tx.execute(
            "INSERT INTO nonces (portal_id, nonce, expires_at) VALUES (?, ?, ?)", ("w", "dup", 1.0)
        )

    others = [store.remember_nonce("w", f"ok{n}", T0, 300) for n in range(5)]
    results = await asyncio.gather(db.run(duplicate), *others, return_exceptions=True)
    assert type(results[0]).__name__ == "Permanent"  # a constraint: retrying cannot help
    assert results[1:] == [True] * 5

    async def count(tx: Tx) -> int:
        row = await tx.fetchone("SELECT count(*) FROM nonces WHERE nonce = ?", ("dup",))
        assert row is not None
        return int(row[0])

    assert await db.run(count) == 0


async def test_admit_creates_the_application_with_the_claim(store: Store) -> None:
    app = new_app("k1")
    claim, record = await store.admit("window", "k1", app.fingerprint, T0, LEASE, new=app)
    assert claim == Fresh(None)
    assert record is not None
    assert record == await store.get_application(app.id)
    assert await store.find_application("window", "k1") == record
    # the lease is held: the same key meanwhile is in flight, and creates nothing
    again, none = await store.admit(
        "window", "k1", app.fingerprint, T0 + 1, LEASE, new=new_app("k1")
    )
    assert again == InFlight(T0 + LEASE)
    assert none is None
    other, _ = await store.admit("window", "k1", "0" * 64, T0 + 1, LEASE, new=None)
    assert other == Mismatch()


async def test_admit_after_a_release_returns_the_earlier_application(store: Store) -> None:
    app = new_app("k2")
    _, first = await store.admit("window", "k2", app.fingerprint, T0, LEASE, new=app)
    await store.release_idempotency("window", "k2")  # e.g. the broker was down: 503
    claim, record = await store.admit(
        "window", "k2", app.fingerprint, T0 + 1, LEASE, new=new_app("k2")
    )
    assert claim == Fresh(app.id)
    assert record == first  # never a second application for one key
    listed = await store.list_applications(portal_id="window")
    assert [a.id for a in listed] == [app.id]


async def test_admit_over_an_expired_claim_links_the_key_to_its_application(
    store: Store,
) -> None:
    app = new_app("k4")
    # a claim whose holder died before creating anything; its lease runs out
    assert await store.claim_idempotency("window", "k4", app.fingerprint, T0, LEASE) == Fresh(None)
    claim, record = await store.admit("window", "k4", app.fingerprint, T0 + LEASE, LEASE, new=app)
    assert claim == Fresh(None)
    assert record is not None and record.id == app.id
    await store.release_idempotency("window", "k4")
    again, earlier = await store.admit(
        "window", "k4", app.fingerprint, T0 + LEASE + 1, LEASE, new=new_app("k4")
    )
    assert again == Fresh(app.id)  # the key names the application created over it
    assert earlier == record


async def test_admit_stores_the_refusal_of_an_invalid_envelope(store: Store) -> None:
    refusal = Answer(422, b'{"type":"invalid-envelope"}', "application/problem+json")
    claim, record = await store.admit(
        "window", "k3", "e" * 64, T0, LEASE, new=None, refusal=refusal
    )
    assert claim == Fresh(None)
    assert record is None
    replay, _ = await store.admit("window", "k3", "e" * 64, T0 + 1, LEASE, new=None)
    assert replay == Replay(422, refusal.body, refusal.content_type, None)
    assert await store.list_applications(portal_id="window") == []


async def test_sqlite_work_that_awaits_anything_else_is_refused(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'store.db'}")
    db = cast(SqlStore, store).database

    async def sleeps(tx: Tx) -> None:
        await tx.execute("INSERT INTO nonces (portal_id, nonce, expires_at) VALUES ('w', 'x', 1)")
        await asyncio.sleep(0)

    try:
        with pytest.raises(RuntimeError, match="awaited something other"):
            await db.run(sleeps)
        assert await store.remember_nonce("w", "x", 0.0, 300)  # its insert was rolled back
    finally:
        await store.close()


async def test_admit_records_the_nonce_with_the_claim(store: Store) -> None:
    app = new_app("k4")
    claim, record = await store.admit(
        "window", "k4", app.fingerprint, T0, LEASE, new=app, nonce=Nonce("n4", T0, 300)
    )
    assert claim == Fresh(None) and record is not None
    # recorded in that transaction: the nonce is used now, for this portal only
    assert not await store.remember_nonce("window", "n4", T0 + 1, 300)
    assert await store.remember_nonce("mobile", "n4", T0 + 1, 300)


async def test_admit_with_a_reused_nonce_claims_and_stores_nothing(store: Store) -> None:
    assert await store.remember_nonce("window", "n5", T0, 300)
    app = new_app("k5")
    with pytest.raises(NonceReused):
        await store.admit(
            "window", "k5", app.fingerprint, T0 + 1, LEASE, new=app, nonce=Nonce("n5", T0 + 1, 300)
        )
    assert await store.list_applications(portal_id="window") == []
    # the key was not claimed: a fresh nonce takes it at once (no lease held)
    claim, record = await store.admit(
        "window", "k5", app.fingerprint, T0 + 2, LEASE, new=app, nonce=Nonce("n6", T0 + 2, 300)
    )
    assert claim == Fresh(None) and record is not None and record.id == app.id
    # and once its ttl has passed, the nonce may be used again
    claim, _ = await store.admit(
        "window", "k6", "f" * 64, T0 + 301, LEASE, new=None, nonce=Nonce("n5", T0 + 301, 300)
    )
    assert claim == Fresh(None)
