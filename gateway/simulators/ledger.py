"""The simulators' effect ledger: every delivery and every applied effect, by business key.

A department applies an effect (registers a birth, issues a certificate) once per
idempotency key, as a real system would. The ledger records each delivery and each applied
effect under the business key (system, application, task), so a double effect is visible
even when the gateway sent the same task under two different idempotency keys: that is what
the "nothing twice" tests read, never the gateway's own belief.

Backed by SQLite so a test or an operator can read it from another process; calls run off
the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    system TEXT NOT NULL, application_id TEXT NOT NULL, task TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, received_at REAL NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS effects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    system TEXT NOT NULL, application_id TEXT NOT NULL, task TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, applied_at REAL NOT NULL, result TEXT NOT NULL,
    UNIQUE (system, idempotency_key)
);
CREATE INDEX IF NOT EXISTS effects_business ON effects (system, application_id, task);
"""


@dataclass(frozen=True, slots=True)
class Effect:
    seq: int
    system: str
    application_id: str
    task: str
    idempotency_key: str
    applied_at: float
    result: dict[str, Any]


class EffectLedger:
    def __init__(self, path: Path | str = ":memory:") -> None:
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL") if str(path) != ":memory:" else None
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    async def record_delivery(
        self, system: str, application_id: str, task: str, key: str, detail: str = ""
    ) -> None:
        await asyncio.to_thread(
            self._run,
            "INSERT INTO deliveries (system, application_id, task, idempotency_key, "
            "received_at, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (system, application_id, task, key, time.time(), detail),
        )

    async def applied(self, system: str, key: str) -> dict[str, Any] | None:
        """The result of the effect applied under this idempotency key, if any."""
        rows = await asyncio.to_thread(
            self._run,
            "SELECT result FROM effects WHERE system = ? AND idempotency_key = ?",
            (system, key),
        )
        return json.loads(rows[0][0]) if rows else None

    async def apply(
        self, system: str, application_id: str, task: str, key: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply the effect once per idempotency key; return the result that stands."""

        def go() -> dict[str, Any]:
            with self._lock:
                self._conn.execute(
                    "INSERT OR IGNORE INTO effects (system, application_id, task, "
                    "idempotency_key, applied_at, result) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        system,
                        application_id,
                        task,
                        key,
                        time.time(),
                        json.dumps(result, ensure_ascii=False, sort_keys=True),
                    ),
                )
                row = self._conn.execute(
                    "SELECT result FROM effects WHERE system = ? AND idempotency_key = ?",
                    (system, key),
                ).fetchone()
            stored: dict[str, Any] = json.loads(row[0])
            return stored

        return await asyncio.to_thread(go)

    async def effects(self, application_id: str | None = None) -> list[Effect]:
        sql = (
            "SELECT seq, system, application_id, task, idempotency_key, applied_at, result "
            "FROM effects"
        )
        params: tuple[Any, ...] = ()
        if application_id is not None:
            sql += " WHERE application_id = ?"
            params = (application_id,)
        rows = await asyncio.to_thread(self._run, sql + " ORDER BY seq", params)
        return [Effect(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    async def double_effects(self) -> list[tuple[str, str, str, int]]:
        """(system, application, task, count) applied more than once: must stay empty."""
        rows = await asyncio.to_thread(
            self._run,
            "SELECT system, application_id, task, COUNT(*) FROM effects "
            "GROUP BY system, application_id, task HAVING COUNT(*) > 1",
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def deliveries(self, application_id: str) -> list[tuple[str, str, str, str]]:
        """(system, task, idempotency key, detail) of every request that reached a department."""
        rows = await asyncio.to_thread(
            self._run,
            "SELECT system, task, idempotency_key, detail FROM deliveries "
            "WHERE application_id = ? ORDER BY seq",
            (application_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def delivery_count(self, system: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM deliveries"
        params: tuple[Any, ...] = ()
        if system is not None:
            sql, params = sql + " WHERE system = ?", (system,)
        rows = await asyncio.to_thread(self._run, sql, params)
        return int(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
