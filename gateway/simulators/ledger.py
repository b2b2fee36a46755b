"""The simulators' effect ledger: every delivery and every applied effect, by business key.

A department applies an effect (registers a birth, issues a certificate) once per
idempotency key, as a real system would. The ledger records each delivery and each applied
effect under the business key (system, application, task), so a double effect is visible
even when the gateway sent the same task under two different idempotency keys: that is what
the "nothing twice" tests read, never the gateway's own belief.

Backed by SQLite so a test or an operator can read it from another process. Every call runs
on the ledger's one thread, which alone opens, uses and closes the connection: off the event
loop, and never waiting behind other work on the loop's default executor. The file is in WAL
mode with ``synchronous=NORMAL``: a process killed at any moment loses no committed row (only
a power cut could drop the last ones, which a simulator may).

It also keeps each simulator's decided cases (``keep_case`` / ``case``), so a simulator holds
in memory only its open cases and the newest decided ones (``Retention``) and answers older
ones from here: its memory stays flat however long it runs.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from connectors.filethreads import FileThreads

T = TypeVar("T")

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
CREATE INDEX IF NOT EXISTS effects_citizen_day ON effects (
    system, substr(json_extract(result, '$.citizen_id'), 1, 14)
);
CREATE TABLE IF NOT EXISTS cases (
    system TEXT NOT NULL, key TEXT NOT NULL, case_no TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (system, key)
);
CREATE INDEX IF NOT EXISTS cases_no ON cases (system, case_no);
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


class LedgerCalls:
    """The ledger's calls that a simulator combines, as plain functions on the ledger's thread:
    ``EffectLedger.run(work)`` hands them to ``work`` so that several (look up the citizen IDs
    given out, apply, keep the case) cost one hop to that thread instead of one each."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def applied(self, system: str, key: str) -> dict[str, Any] | None:
        """The result of the effect applied under this idempotency key, if any."""
        row = self._conn.execute(
            "SELECT result FROM effects WHERE system = ? AND idempotency_key = ?", (system, key)
        ).fetchone()
        return None if row is None else cast(dict[str, Any], json.loads(row[0]))

    def apply(
        self, system: str, application_id: str, task: str, key: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply the effect once per idempotency key; return the result that stands."""
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
        stored = self.applied(system, key)
        assert stored is not None  # inserted now or before
        return stored

    def citizen_ids(self, system: str, prefix: str) -> set[str]:
        """The citizen IDs applied by ``system`` that start with ``prefix``: found through an
        index (for the 14 characters of county and birth date) instead of held in memory."""
        issued = "json_extract(result, '$.citizen_id')"
        where, params = f"substr({issued}, 1, 14) = ?", (system, prefix)  # the indexed one
        if len(prefix) != 14:
            where, params = f"substr({issued}, 1, {len(prefix):d}) = ?", (system, prefix)
        rows = self._conn.execute(
            f"SELECT {issued} FROM effects WHERE system = ? AND {where}",  # noqa: S608  # ours
            params,
        ).fetchall()
        return {str(r[0]) for r in rows}

    def keep_case(self, system: str, key: str, case_no: str, state: Mapping[str, Any]) -> None:
        """Store (or replace) a simulator's case as it stands, under its key and number."""
        self._conn.execute(
            "INSERT OR REPLACE INTO cases (system, key, case_no, state) VALUES (?, ?, ?, ?)",
            (system, key, case_no, json.dumps(state, ensure_ascii=False, sort_keys=True)),
        )

    def case(
        self, system: str, *, key: str | None = None, case_no: str | None = None
    ) -> dict[str, Any] | None:
        """A case kept by ``keep_case``, by its key or else by its number."""
        column, value = ("key", key) if key is not None else ("case_no", case_no)
        row = self._conn.execute(
            f"SELECT state FROM cases WHERE system = ? AND {column} = ? LIMIT 1",  # noqa: S608  # a column name of ours
            (system, value),
        ).fetchone()
        return None if row is None else cast(dict[str, Any], json.loads(row[0]))


class EffectLedger:
    def __init__(self, path: Path | str = ":memory:") -> None:
        self._thread = FileThreads(1, name="effect-ledger")
        self._conn = self._thread.call(_connect, str(path))
        self._calls = LedgerCalls(self._conn)
        self._closed = False

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    async def run(self, work: Callable[[LedgerCalls], T]) -> T:
        """``work`` on the ledger's thread, given the calls it may combine (one hop for all),
        in one transaction: what it writes stands only if it returns (an effect applied and
        its case not kept, a keep that failed, leaves nothing behind)."""
        return await self._thread.run(self._atomic, work)

    def _atomic(self, work: Callable[[LedgerCalls], T]) -> T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer in between
        try:
            done = work(self._calls)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return done

    async def record_delivery(
        self, system: str, application_id: str, task: str, key: str, detail: str = ""
    ) -> None:
        await self._thread.run(
            self._run,
            "INSERT INTO deliveries (system, application_id, task, idempotency_key, "
            "received_at, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (system, application_id, task, key, time.time(), detail),
        )

    async def applied(self, system: str, key: str) -> dict[str, Any] | None:
        """The result of the effect applied under this idempotency key, if any."""
        return await self._thread.run(self._calls.applied, system, key)

    async def apply(
        self, system: str, application_id: str, task: str, key: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply the effect once per idempotency key; return the result that stands."""
        return await self._thread.run(self._calls.apply, system, application_id, task, key, result)

    async def effect_count(self, system: str) -> int:
        rows = await self._thread.run(
            self._run, "SELECT COUNT(*) FROM effects WHERE system = ?", (system,)
        )
        return int(rows[0][0])

    async def citizen_ids(self, system: str, prefix: str) -> set[str]:
        """The citizen IDs applied by ``system`` that start with ``prefix`` (an index lookup)."""
        return await self._thread.run(self._calls.citizen_ids, system, prefix)

    async def keep_case(
        self, system: str, key: str, case_no: str, state: Mapping[str, Any]
    ) -> None:
        """Store (or replace) a simulator's case as it stands, under its key and number."""
        await self._thread.run(self._calls.keep_case, system, key, case_no, state)

    async def case(
        self, system: str, *, key: str | None = None, case_no: str | None = None
    ) -> dict[str, Any] | None:
        """A case kept by ``keep_case``, by its key or else by its number."""
        return await self._thread.run(
            functools.partial(self._calls.case, system, key=key, case_no=case_no)
        )

    async def effects(self, application_id: str | None = None) -> list[Effect]:
        sql = (
            "SELECT seq, system, application_id, task, idempotency_key, applied_at, result "
            "FROM effects"
        )
        params: tuple[Any, ...] = ()
        if application_id is not None:
            sql += " WHERE application_id = ?"
            params = (application_id,)
        rows = await self._thread.run(self._run, sql + " ORDER BY seq", params)
        return [Effect(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    async def double_effects(self) -> list[tuple[str, str, str, int]]:
        """(system, application, task, count) applied more than once: must stay empty."""
        rows = await self._thread.run(
            self._run,
            "SELECT system, application_id, task, COUNT(*) FROM effects "
            "GROUP BY system, application_id, task HAVING COUNT(*) > 1",
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def deliveries(self, application_id: str) -> list[tuple[str, str, str, str]]:
        """(system, task, idempotency key, detail) of every request that reached a department."""
        rows = await self._thread.run(
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
        rows = await self._thread.run(self._run, sql, params)
        return int(rows[0][0])

    def close(self) -> None:
        """Close the connection on its thread, then let the thread go; again: nothing."""
        if not self._closed:
            self._closed = True
            self._thread.call(self._conn.close)
            self._thread.close()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # used by the thread that opens it only
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    return conn
