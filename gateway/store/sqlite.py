"""SQLite behind the ``Database`` seam: stdlib ``sqlite3``, off the event loop.

One connection lives on one dedicated worker thread; every call hops there, so a slow
statement or a wait for another process's write lock never stalls the event loop. An
``asyncio.Lock`` lets one transaction run at a time in this process, and each transaction
starts with ``BEGIN IMMEDIATE`` so several processes may share the file (WAL mode; a
writer waits up to ``busy_timeout`` for the others, then the caller gets
``StoreUnavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from gateway.errors import Permanent, StoreUnavailable
from gateway.store.sql import Dialect, Params, Row

SQLITE = Dialect(
    name="sqlite",
    tokens={"BYTES": "BLOB", "SERIAL_ID": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    lock_rows="",  # BEGIN IMMEDIATE already holds the database's write lock
    skip_locked="",
    migration_lock=None,
)

T = TypeVar("T")


def _translate(exc: sqlite3.Error, during: str) -> Exception:
    """sqlite3's errors, grouped by what the caller should do."""
    detail = f"sqlite {during}: {exc}"
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
        # locked beyond busy_timeout, cannot open the file, disk I/O error, closed
        return StoreUnavailable(detail, system="store", code=type(exc).__name__)
    # IntegrityError, ProgrammingError, DataError …: a bug or a broken invariant
    return Permanent(detail, system="store", code=type(exc).__name__)


class SqliteDatabase:
    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        self._lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = 5.0) -> SqliteDatabase:
        """Open the file at ``path`` (creating it and its folder), or ``":memory:"``."""
        db = cls(path, busy_timeout)
        try:
            await db._call(db._connect, "open")
        except BaseException:
            db._executor.shutdown(wait=False)
            raise
        return db

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        async with self._lock:
            try:
                await self._call(self._begin, "begin")
                yield _SqliteTx(self)
                await self._call(self._commit, "commit")
            except BaseException:
                # Queued behind whatever the worker is still running (a BEGIN this task was
                # cancelled while awaiting, say), so the write lock is never left held.
                with contextlib.suppress(RuntimeError):  # unless the store is closed
                    rollback = asyncio.get_running_loop().run_in_executor(
                        self._executor, self._rollback
                    )
                    await asyncio.shield(rollback)
                raise

    async def close(self) -> None:
        """Close after the running transaction, if any; later calls get StoreUnavailable."""
        async with self._lock:
            if self._conn is not None:
                await self._call(self._close, "close")
            self._executor.shutdown(wait=False)

    async def _call(self, fn: Callable[[], T], during: str) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise _translate(exc, during) from exc
        except OSError as exc:  # the database's folder could not be created
            raise StoreUnavailable(f"sqlite {during}: {exc}", system="store") from exc
        except RuntimeError as exc:  # the executor was shut down: the store is closed
            raise StoreUnavailable(f"sqlite {during}: {exc}", system="store") from exc

    # -- everything below runs on the worker thread ------------------------------------

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,  # sqlite3_busy_timeout: wait for other writers
            isolation_level=None,  # we issue BEGIN / COMMIT ourselves
            check_same_thread=True,  # only this worker thread ever touches it
        )
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (it stays so). While other connections open a new file
        SQLite may answer "locked" at once, bypassing the busy handler: retry until the
        busy timeout instead."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)  # on the worker thread, never on the event loop

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.InterfaceError("the store is closed")
        return self._conn

    def _begin(self) -> None:
        conn = self._connection()
        if conn.in_transaction:  # a rollback after cancellation did not get to run
            conn.rollback()
        conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._connection().execute("COMMIT")

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            # On failure the next _begin retries; the original error is what matters.
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _execute(self, sql: str, params: Params) -> int:
        return self._connection().execute(sql, tuple(params)).rowcount

    def _fetchone(self, sql: str, params: Params) -> Row | None:
        row: Row | None = self._connection().execute(sql, tuple(params)).fetchone()
        return row

    def _fetchall(self, sql: str, params: Params) -> list[Row]:
        rows: list[Row] = self._connection().execute(sql, tuple(params)).fetchall()
        return rows


class _SqliteTx:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._db._call(functools.partial(self._db._execute, sql, params), "execute")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._db._call(functools.partial(self._db._fetchone, sql, params), "query")

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._db._call(functools.partial(self._db._fetchall, sql, params), "query")
