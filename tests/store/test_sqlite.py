"""SQLite specifics: the event loop keeps running while the database waits or works."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StoreUnavailable
from gateway.store import open_store
from gateway.store.sql import SqlStore, apply_migrations
from gateway.store.sqlite import SqliteDatabase


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process, as far as SQLite can tell: a connection holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_waiting_for_the_write_lock_does_not_block_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await open_store(f"sqlite:///{path}")
    other = hold_write_lock(path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while ticks < 20:
            await asyncio.sleep(0.005)
            ticks += 1
        other.execute("COMMIT")  # only a running loop can ever let the store through

    try:
        ticking = asyncio.create_task(ticker())
        assert await store.remember_nonce("window", "n", 0.0, 300)
        assert ticks == 20
        await ticking
    finally:
        other.close()
        await store.close()


async def test_a_slow_statement_does_not_block_the_loop(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(str(tmp_path / "store.db"))
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        async with db.transaction() as tx:
            row = await tx.fetchone(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
                "SELECT count(*) FROM c",
                (300_000,),
            )
        assert row == (300_000,)
    finally:
        done.set()
        await ticking
        await db.close()
    assert ticks > 10  # a blocked loop would have ticked at most once or twice


async def test_locked_beyond_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = await SqliteDatabase.open(str(path), busy_timeout=0.05)
    await apply_migrations(db, now=0)
    store = SqlStore(db)
    other = hold_write_lock(path)
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.remember_nonce("window", "n", 0.0, 300)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await store.remember_nonce("window", "n", 0.0, 300)  # and it recovers
    await store.close()


async def test_cancelled_call_does_not_keep_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await open_store(f"sqlite:///{path}")
    other = hold_write_lock(path)
    call = asyncio.create_task(store.remember_nonce("window", "n", 0.0, 300))
    for _ in range(5):
        await asyncio.sleep(0.01)  # the store's worker now waits in BEGIN IMMEDIATE
    call.cancel()
    other.execute("COMMIT")
    with pytest.raises(asyncio.CancelledError):
        await call
    try:
        other.execute("BEGIN IMMEDIATE")  # waits up to 5 s if the store still held the lock
        other.execute("COMMIT")
    finally:
        other.close()
    assert await store.remember_nonce("window", "n", 0.0, 300)  # the cancelled call left no row
    await store.close()
